"""The versioned model price table that ingest uses to fill `cost_usd` when an app sends none.

The table lives in data/prices.yaml (list prices in USD per million tokens). Its `version`
is stored beside each computed cost, so a cost can always be traced to the prices used.
Entries may price prompt-cache reads and writes apart (`cached_input_per_mtok`,
`cache_write_per_mtok`); where they do not, cached tokens cost what other input costs.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from datetime import date
from importlib import resources
from typing import Any

import yaml

_PACKAGED = "data/prices.yaml"
_FIELDS = ("provider", "model", "input_per_mtok", "output_per_mtok")
_OPTIONAL = ("cached_input_per_mtok", "cache_write_per_mtok")
# Characters that end a base model name inside a longer one: dated snapshots
# (gpt-4o-2024-08-06), Vertex versions (claude-3-5-sonnet@20241022), tags (llama3:70b).
_SUFFIX_MARKS = "-@:"


class PriceTableError(ValueError):
    """The price file is missing, not YAML, or has an entry that does not validate."""


@dataclass(frozen=True)
class ModelPrice:
    provider: str
    model: str
    input_per_mtok: float
    output_per_mtok: float
    cached_input_per_mtok: float | None = None
    cache_write_per_mtok: float | None = None

    def cost(
        self, tokens_in: int | None, tokens_out: int | None, *, cache_read: int | None = None,
        cache_write: int | None = None,
    ) -> float | None:
        """USD for the call. `tokens_in` counts every prompt token, cached ones included (as
        OpenAI and the GenAI conventions report it); `cache_read` / `cache_write` say how many
        of them came from or went into the prompt cache. A provider that reports cache
        tokens beside the prompt instead (more cache tokens than prompt tokens) is read so."""
        # A missing count is only harmless where that side is free (embeddings have no
        # output); anywhere else the cost would be understated, so there is none.
        if (tokens_in is None and self.input_per_mtok) or (tokens_out is None and self.output_per_mtok):
            return None
        read, write = cache_read or 0, cache_write or 0
        plain = (tokens_in or 0) - read - write
        if plain < 0:
            plain = tokens_in or 0
        read_price = self.input_per_mtok if self.cached_input_per_mtok is None else self.cached_input_per_mtok
        write_price = self.input_per_mtok if self.cache_write_per_mtok is None else self.cache_write_per_mtok
        return (plain * self.input_per_mtok + read * read_price + write * write_price
                + (tokens_out or 0) * self.output_per_mtok) / 1_000_000


def _prices(price: ModelPrice) -> tuple[float | None, ...]:
    return (price.input_per_mtok, price.output_per_mtok, price.cached_input_per_mtok, price.cache_write_per_mtok)


# One model name under several providers at different prices: a model-only lookup
# cannot choose, and a guessed cost is worse than none.
_AMBIGUOUS = ModelPrice("", "", math.nan, math.nan)


def _match(names: dict[str, ModelPrice], model: str) -> ModelPrice | None:
    """Exact name, else the longest known name that `model` starts with, followed by a suffix mark."""
    found = names.get(model)
    if found is not None:
        return found
    for i in range(len(model) - 1, 0, -1):
        if model[i] in _SUFFIX_MARKS:
            found = names.get(model[:i])
            if found is not None:
                return found
    return None


class PriceTable:
    def __init__(self, version: str, prices: list[ModelPrice]) -> None:
        self.version = version
        self.prices = tuple(prices)
        self._by_provider: dict[str, dict[str, ModelPrice]] = {}
        self._by_model: dict[str, ModelPrice] = {}
        for price in self.prices:
            model = price.model.lower()
            self._by_provider.setdefault(price.provider.lower(), {})[model] = price
            seen = self._by_model.get(model)
            if seen is None:
                self._by_model[model] = price
            elif _prices(seen) != _prices(price):
                self._by_model[model] = _AMBIGUOUS

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> PriceTable:
        """The table in `path`, or the one packaged with lookout-core."""
        if path is None:
            source = f"lookout.core/{_PACKAGED}"
            text = resources.files("lookout.core").joinpath(_PACKAGED).read_text(encoding="utf-8")
        else:
            source = os.fspath(path)
            try:
                with open(source, encoding="utf-8") as f:
                    text = f.read()
            except OSError as e:
                raise PriceTableError(f"{source}: cannot read price table: {e.strerror}") from e
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise PriceTableError(f"{source}: not valid YAML: {e}") from e
        return cls.from_data(data, source)

    @classmethod
    def from_data(cls, data: Any, source: str = "<price table>") -> PriceTable:
        if not isinstance(data, dict):
            raise PriceTableError(f"{source}: expected a mapping with version and models")
        version = data.get("version")
        if isinstance(version, date):  # an unquoted 2026-11-01 comes back from YAML as a date
            version = version.isoformat()
        if not isinstance(version, str) or not version.strip():
            raise PriceTableError(f"{source}: version: must be a non-empty string, got {version!r}")
        currency = data.get("currency", "USD")
        if currency != "USD":
            raise PriceTableError(f"{source}: currency: only USD is supported, got {currency!r}")
        unknown = set(data) - {"version", "currency", "models"}
        if unknown:
            raise PriceTableError(f"{source}: unknown top-level keys: {', '.join(sorted(map(str, unknown)))}")
        entries = data.get("models")
        if not isinstance(entries, list) or not entries:
            raise PriceTableError(f"{source}: models: must be a non-empty list of entries")

        prices: list[ModelPrice] = []
        seen: dict[tuple[str, str], int] = {}
        for i, entry in enumerate(entries):
            where = f"{source}: models[{i}]"
            if not isinstance(entry, dict):
                raise PriceTableError(f"{where}: must be a mapping with {', '.join(_FIELDS)}")
            extra = set(entry) - set(_FIELDS) - set(_OPTIONAL)
            if extra:
                raise PriceTableError(f"{where}: unknown field {sorted(map(str, extra))[0]!r}")
            for name in ("provider", "model"):
                value = entry.get(name)
                if not isinstance(value, str) or not value.strip():
                    raise PriceTableError(f"{where}.{name}: must be a non-empty string, got {value!r}")
            for name in ("input_per_mtok", "output_per_mtok", *(n for n in _OPTIONAL if n in entry)):
                value = entry.get(name)
                is_number = isinstance(value, int | float) and not isinstance(value, bool)
                if not (is_number and isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                    raise PriceTableError(
                        f"{where}.{name}: must be a number >= 0 (USD per million tokens), got {value!r}"
                    )
            price = ModelPrice(
                entry["provider"].strip(),
                entry["model"].strip(),
                float(entry["input_per_mtok"]),
                float(entry["output_per_mtok"]),
                *(None if entry.get(n) is None else float(entry[n]) for n in _OPTIONAL),
            )
            key = (price.provider.lower(), price.model.lower())
            if key in seen:
                raise PriceTableError(
                    f"{where}.model: {price.provider}/{price.model} is already in models[{seen[key]}]"
                )
            seen[key] = i
            prices.append(price)
        return cls(version.strip(), prices)

    def lookup(self, provider: str | None, model: str | None) -> ModelPrice | None:
        """The price entry for a call. The provider narrows the match where it lists the model;
        otherwise (provider "unknown", a gateway, an OpenAI-compatible client pointed at
        another host) the model name alone decides."""
        if not model:
            return None
        name = model.strip().lower()
        names = self._by_provider.get((provider or "").strip().lower())
        if names is not None:
            found = _match(names, name)
            if found is not None:
                return found
        found = _match(self._by_model, name)
        return None if found is _AMBIGUOUS else found

    def cost(
        self, provider: str | None, model: str | None, tokens_in: int | None, tokens_out: int | None, *,
        cache_read: int | None = None, cache_write: int | None = None,
    ) -> float | None:
        """USD for the call, or None when the model is unknown or the token counts are missing."""
        if tokens_in is None and tokens_out is None:
            return None
        price = self.lookup(provider, model)
        if price is None:
            return None
        return price.cost(tokens_in, tokens_out, cache_read=cache_read, cache_write=cache_write)
