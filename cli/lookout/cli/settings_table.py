"""The README's settings table, generated from the services' settings classes so the
documentation cannot drift from what the code reads: `lookout settings` prints it,
`lookout settings --write README.md` (or `python -m lookout.cli.settings_table README.md`)
writes it between the README's markers."""

from __future__ import annotations

import importlib

from pydantic_settings import BaseSettings

from lookout.core.settings import CommonSettings

# (service label, module, class); services that are not installed are left out.
SERVICES = [
    ("ingest", "lookout.ingest.settings", "IngestSettings"),
    ("sink", "lookout.sink.settings", "SinkSettings"),
    ("drift", "lookout.drift.settings", "DriftSettings"),
    ("judge", "lookout.judge.settings", "JudgeSettings"),
    ("feedback", "lookout.feedback.settings", "FeedbackSettings"),
    ("retrain-trigger", "lookout.retrain_trigger.settings", "RetrainSettings"),
    ("dashboards", "lookout.dashboards.settings", "DashboardSettings"),
    ("alerts", "lookout.alerts.settings", "AlertSettings"),
    ("stack", "lookout.stack.overview_access", "OverviewSettings"),
    ("stack", "lookout.stack.broker", "EmbeddedSettings"),
]


def settings_classes() -> list[tuple[str, type[BaseSettings]]]:
    found: list[tuple[str, type[BaseSettings]]] = [("all", CommonSettings)]
    for label, module, name in SERVICES:
        try:
            found.append((label, getattr(importlib.import_module(module), name)))
        except (ImportError, AttributeError):
            continue
    return found


def rows() -> list[tuple[str, str, str, str]]:
    """(variable, services, default, description) for every setting, common ones first."""
    seen: dict[str, list] = {}
    common = set(CommonSettings.model_fields)
    for label, cls in settings_classes():
        for name, info in cls.model_fields.items():
            if label != "all" and name in common:
                continue
            var = f"LOOKOUT_{name.upper()}"
            if var in seen:
                seen[var][1].append(label)
                continue
            default = "" if info.default is None else str(info.default)
            seen[var] = [var, [label], default, info.description or ""]
    return [(v, ", ".join(s), d, desc) for v, s, d, desc in seen.values()]


def markdown_table() -> str:
    lines = ["| variable | service | default | meaning |", "|---|---|---|---|"]
    for var, services, default, desc in rows():
        shown = f"`{default}`" if default else ""
        lines.append(f"| `{var}` | {services} | {shown} | {desc} |")
    return "\n".join(lines)


START, END = "<!-- settings-table:start -->", "<!-- settings-table:end -->"


def render_into(readme: str) -> str:
    """The README text with the table between its markers replaced by the current one."""
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{markdown_table()}\n{END}{tail}"


if __name__ == "__main__":
    import sys
    from pathlib import Path

    path = Path(sys.argv[1] if len(sys.argv) > 1 else "README.md")
    path.write_text(render_into(path.read_text()))
    print(f"settings table written into {path}")
