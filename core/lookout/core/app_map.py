"""`AppMap[T]`: a per-app setting such as LOOKOUT_JUDGE_SAMPLE_RATES=app1=0.1,app2=1.

One format and one parser for every per-app map: `app=value` entries separated by commas
(blanks around them ignored), each app id valid and listed once, each value validated as T
by pydantic (constraints included: `AppMap[Annotated[float, Field(ge=0, le=1)]]`). A bad
map is refused when the settings load, with the entry named:

    judge_sample_rates
      entries 'app2=2': Input should be less than or equal to 1 ...

A field takes the text, a mapping or another AppMap; it writes itself back as the text, so
the README's settings table and model_dump round-trip. `.for_app(app_id, default)` is the
value for one app.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Generic, TypeVar

from pydantic import TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError, core_schema

V = TypeVar("V")

# The same rule as events.AppId and the API keys' app binding.
_APP_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}
_ADAPTERS_LOCK = threading.Lock()


def _adapter(value_type: Any) -> TypeAdapter[Any]:
    with _ADAPTERS_LOCK:
        found = _ADAPTERS.get(value_type)
        if found is None:
            found = _ADAPTERS[value_type] = TypeAdapter(value_type)
        return found


class AppMap(Generic[V]):
    """An immutable app_id → value map; unlisted apps take the caller's default."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, V] | None = None):
        self._items: dict[str, V] = dict(items or {})

    def for_app(self, app_id: str, default: V) -> V:
        return self._items.get(app_id, default)

    def __getitem__(self, app_id: str) -> V:
        return self._items[app_id]

    def __contains__(self, app_id: object) -> bool:
        return app_id in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> list[tuple[str, V]]:
        return list(self._items.items())

    def as_dict(self) -> dict[str, V]:
        return dict(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, AppMap):
            return self._items == other._items
        if isinstance(other, Mapping):
            return self._items == dict(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(sorted((k, repr(v)) for k, v in self._items.items())))

    def __str__(self) -> str:
        return ",".join(f"{app}={_text(value)}" for app, value in self._items.items())

    def __repr__(self) -> str:
        return f"AppMap({self._items!r})"

    # -- parsing ----------------------------------------------------------------------

    @classmethod
    def parse(cls, value: Any, value_type: Any = Any) -> AppMap[Any]:
        """An AppMap from text ('a=1,b=2'), a mapping or an AppMap, each value validated
        as `value_type`. Raises ValueError naming every bad entry."""
        if isinstance(value, AppMap):
            entries = [(app, v, f"{app}={_text(v)}") for app, v in value.items()]
        elif isinstance(value, Mapping):
            entries = [(str(app), v, f"{app}={_text(v)}") for app, v in value.items()]
        elif isinstance(value, str):
            entries = []
            for raw in value.split(","):
                entry = raw.strip()
                if not entry:
                    continue
                app, sep, text = (part.strip() for part in entry.partition("="))
                entries.append((app if sep else "", text if sep else None, entry))
        else:
            raise ValueError(f"expected 'app=value,...' text or a mapping, got {type(value).__name__}")
        adapter = _adapter(value_type)
        items: dict[str, Any] = {}
        problems: list[str] = []
        for app, raw_value, entry in entries:
            if raw_value is None or not app:
                problems.append(f"{entry!r}: expected app_id=value")
                continue
            if not _APP_ID.match(app):
                problems.append(f"{entry!r}: {app!r} is not an app id (letters, digits, '._:-', at most 128)")
                continue
            if app in items:
                problems.append(f"{entry!r}: app {app!r} is listed twice")
                continue
            try:
                items[app] = adapter.validate_python(raw_value)
            except ValidationError as exc:
                problems.append(f"{entry!r}: {'; '.join(e['msg'] for e in exc.errors())}")
        if problems:
            raise ValueError(f"bad {'entry' if len(problems) == 1 else 'entries'} " + ", ".join(problems))
        return cls(items)

    def __class_getitem__(cls, params: Any) -> Any:
        # AppMap[T] is Annotated[AppMap[T], its schema]: pydantic reads the schema from the
        # metadata, and pydantic-settings, which JSON-decodes environment values of any
        # class with a schema hook of its own, passes the text through untouched.
        return Annotated[super().__class_getitem__(params), _Schema(params)]  # type: ignore[misc]


class _Schema:
    """How pydantic validates and writes one AppMap[T] field."""

    def __init__(self, value_type: Any):
        self.value_type = value_type

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Schema) and other.value_type == self.value_type

    def __hash__(self) -> int:
        return hash(("AppMap", repr(self.value_type)))

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> core_schema.CoreSchema:
        value_type = self.value_type

        def validate(value: Any) -> AppMap[Any]:
            try:
                return AppMap.parse(value, value_type)
            except ValueError as exc:
                raise PydanticCustomError("app_map", "{problem}", {"problem": str(exc)}) from None

        return core_schema.no_info_plain_validator_function(
            validate,
            json_schema_input_schema=core_schema.str_schema(),
            serialization=core_schema.plain_serializer_function_ser_schema(str, when_used="json"),
        )


def _text(value: Any) -> str:
    # Written back as it would be typed: 0.1, true, hash.
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)
