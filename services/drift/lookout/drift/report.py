"""Evidently HTML report of one stored drift result, built on demand
(GET /v1/drift/{result_id}/report).

The report compares exactly the samples the result's test compared: drift_windows names
the events of the window and of its reference, and their embeddings and counts come back
from drift_embeddings. A result whose window was not recorded (stored before drift kept
window membership) or whose samples are past retention gets no report rather than one
computed on different data.

Content: Evidently's embedding drift for prompt and response embeddings (its classifier
test and t-SNE plot; the plot is what takes seconds), its column drift for the
character/token counts and the empty-or-refused flag, under a header with the stored
result. Results are immutable, so built pages are kept in a small LRU; one page is built
at a time, since t-SNE takes the cores the worker's encoder needs.
"""

from __future__ import annotations

import asyncio
import html
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi.concurrency import run_in_threadpool

from .detector import EMBEDDING_SIGNALS, MIN_ITEMS
from .features import Sample
from .stats.evidently_methods import no_telemetry
from .store import DriftStore
from .windows import StreamKey

COUNT_COLUMNS = ["prompt_chars", "response_chars", "prompt_tokens", "response_tokens"]
FLAG_COLUMN = "empty_or_refused"
EMBEDDINGS = {"prompt": "prompt_embedding", "response": "response_embedding"}


class ReportUnavailable(Exception):
    """The result exists but the samples it compared cannot be reloaded exactly."""


@dataclass(frozen=True)
class Sides:
    reference: list[Sample]
    current: list[Sample]
    reference_source: str  # 'stream' or 'upload:<id>'


def stream_of(result: dict[str, Any]) -> StreamKey:
    return StreamKey(result["app_id"], result["model"], result.get("prompt_version") or "")


def load_sides(store: DriftStore, result: dict[str, Any]) -> Sides:
    """The reference and current samples the result's test compared, or ReportUnavailable."""
    rid, key = result["result_id"], stream_of(result)
    index = result["details"].get("window_index")
    events = None if index is None else store.load_window(key, result["reference_id"], int(index))
    if events is None:
        raise ReportUnavailable(
            f"drift result {rid} has no recorded window (window {index} of reference {result['reference_id']}): "
            "it predates drift recording which events each window compared, or is past retention"
        )
    reference, current = store.load_window_samples(key, events)
    if len(reference) != len(events.reference) or len(current) != len(events.current):
        raise ReportUnavailable(
            f"drift result {rid}: {len(events.reference) - len(reference)} reference and "
            f"{len(events.current) - len(current)} current samples are no longer stored (past retention?)"
        )
    # The sizes the test reported must be the sizes of what came back: else it would not
    # be this result's comparison.
    attr = EMBEDDING_SIGNALS.get(result["signal"])
    compared = tuple(sum(getattr(s, attr) is not None for s in side) if attr else len(side)
                     for side in (reference, current))
    if compared != (result["reference_size"], result["current_size"]):
        raise ReportUnavailable(
            f"drift result {rid} compared {result['reference_size']} reference and {result['current_size']} "
            f"current samples, but its recorded window gives {compared[0]} and {compared[1]}"
        )
    return Sides(reference, current, events.reference_source)


def build_html(result: dict[str, Any], reference: Sequence[Sample], current: Sequence[Sample],
               reference_source: str = "") -> str:
    """One self-contained page (Evidently's JS and font inlined, no network to view it)."""
    no_telemetry()
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.core.metric_types import render_widgets
    from evidently.legacy.renderers.html_widgets import group_widget
    from evidently.metrics import EmbeddingsDrift, ValueDrift

    runs, notes = [], []
    for name, attr in EMBEDDINGS.items():
        ref = [getattr(s, attr) for s in reference if getattr(s, attr) is not None]
        cur = [getattr(s, attr) for s in current if getattr(s, attr) is not None]
        if len(ref) < MIN_ITEMS or len(cur) < MIN_ITEMS:
            notes.append(f"{name} embeddings: fewer than {MIN_ITEMS} non-empty texts on a side "
                         f"({len(ref)} reference, {len(cur)} current), not compared")
            continue
        # Its own pair of frames: rows without this text (empty) have no embedding, and
        # Evidently's classifier takes no gaps.
        columns = [f"{name}_{i}" for i in range(len(ref[0]))]
        definition = DataDefinition(embeddings={name: columns})
        runs.append(Report([EmbeddingsDrift(embeddings_name=name)]).run(
            Dataset.from_pandas(pd.DataFrame(np.stack(cur), columns=pd.Index(columns)), data_definition=definition),
            Dataset.from_pandas(pd.DataFrame(np.stack(ref), columns=pd.Index(columns)), data_definition=definition),
        ))

    def counts(samples: Sequence[Sample]) -> pd.DataFrame:
        return pd.DataFrame({**{c: [getattr(s, c) for s in samples] for c in COUNT_COLUMNS},
                             FLAG_COLUMN: [int(s.empty_or_refused) for s in samples]})

    definition = DataDefinition(numerical_columns=COUNT_COLUMNS, categorical_columns=[FLAG_COLUMN])
    runs.append(Report([ValueDrift(column=c) for c in [*COUNT_COLUMNS, FLAG_COLUMN]]).run(
        Dataset.from_pandas(counts(current), data_definition=definition),
        Dataset.from_pandas(counts(reference), data_definition=definition),
    ))
    # Several runs (each embedding on its own rows), one page: their widgets in one group.
    widgets = [w for run in runs for metric in run.metric_results.values() for w in metric.get_widgets()]
    page = render_widgets([group_widget(title="", widgets=widgets)], as_iframe=False)
    return _with_header(page, result, len(reference), len(current), reference_source, notes)


def _with_header(page: str, result: dict[str, Any], n_ref: int, n_cur: int, reference_source: str,
                 notes: list[str]) -> str:
    stream = str(stream_of(result))
    p_value = result.get("p_value")
    rows = [
        ("stream", stream),
        ("signal", result["signal"]),
        ("method", result["method"]),
        ("statistic", f"{result['statistic']:.6g}"),
        ("p-value", "-" if p_value is None else f"{p_value:.4g}"),
        ("threshold", "-" if result.get("threshold") is None else f"{result['threshold']:.6g}"),
        ("drifted", "yes" if result["drifted"]
         else ("no, this window crossed" if result["details"].get("window_crossed") else "no")),
        ("reference id", result["reference_id"] + (f" ({reference_source})" if reference_source else "")),
        ("sizes compared by the test", f"reference {result['reference_size']}, current {result['current_size']}"),
        ("samples in this report", f"reference {n_ref}, current {n_cur}"),
        ("window", f"#{result['details'].get('window_index')}: {_utc(result['window_start'])} to "
                   f"{_utc(result['window_end'])}"),
        ("result id", str(result["result_id"])),
    ]
    cells = "".join(f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(k)}</th>"
                    f"<td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    remarks = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    header = (
        "<header style='font-family:sans-serif;margin:16px 24px'>"
        f"<h1 style='font-size:1.4em'>Lookout drift report: {html.escape(stream)} &middot; "
        f"{html.escape(result['signal'])}</h1><table>{cells}</table>"
        "<p style='color:#555'>Below, Evidently's own tests on the same samples (a classifier for embeddings, "
        "K-S or Z-test for columns): their scores need not equal the stored statistic.</p>"
        f"{f'<ul>{remarks}</ul>' if remarks else ''}</header>"
    )
    title = f"<title>Drift {html.escape(stream)} {html.escape(result['signal'])}</title>"
    return page.replace("<head>", f"<head>\n{title}", 1).replace("<body>", f"<body>\n{header}", 1)


def _utc(ts: Any) -> str:
    return f"{ts:%Y-%m-%d %H:%M:%S} UTC" if hasattr(ts, "strftime") else str(ts)


class ReportCache:
    """Built pages per result id (LRU; a page is about 4 MB, most of it Evidently's JS)."""

    def __init__(self, size: int = 8):
        self.size = size
        self._pages: OrderedDict[uuid.UUID, str] = OrderedDict()
        self._building: asyncio.Lock | None = None

    def get(self, result_id: uuid.UUID) -> str | None:
        page = self._pages.get(result_id)
        if page is not None:
            self._pages.move_to_end(result_id)
        return page

    def put(self, result_id: uuid.UUID, page: str) -> None:
        self._pages[result_id] = page
        self._pages.move_to_end(result_id)
        while len(self._pages) > self.size:
            self._pages.popitem(last=False)

    async def page(self, store: DriftStore, result: dict[str, Any]) -> str:
        rid = result["result_id"]
        if (page := self.get(rid)) is not None:
            return page
        if self._building is None:
            self._building = asyncio.Lock()
        async with self._building:
            if (page := self.get(rid)) is not None:  # built while this request waited
                return page
            page = await run_in_threadpool(self._build, store, result)
            self.put(rid, page)
        return page

    @staticmethod
    def _build(store: DriftStore, result: dict[str, Any]) -> str:
        sides = load_sides(store, result)
        return build_html(result, sides.reference, sides.current, sides.reference_source)
