"""AppMap[T]: one parser for every per-app setting (app=value,...)."""

from __future__ import annotations

from typing import Annotated, Literal

import pytest
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from lookout.core.app_map import AppMap

Rate = Annotated[float, Field(ge=0, le=1)]


class Example(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOOKOUT_TEST_", extra="ignore")

    sample_rates: AppMap[Rate] = Field(default=AppMap(), description="Per-app sample rates, e.g. 'app1=0.1,app2=1'.")
    pii_modes: AppMap[Literal["off", "mask", "hash"]] = Field(default=AppMap(), description="Per-app PII modes.")


def test_settings_read_the_map_from_the_environment(monkeypatch):
    monkeypatch.setenv("LOOKOUT_TEST_SAMPLE_RATES", " app1=0.1, app-2=1 ,,")
    monkeypatch.setenv("LOOKOUT_TEST_PII_MODES", "app1=off,billing:eu=hash")
    s = Example()
    assert s.sample_rates.for_app("app1", 0.5) == 0.1
    assert s.sample_rates.for_app("app-2", 0.5) == 1.0
    assert s.sample_rates.for_app("other", 0.5) == 0.5
    assert s.pii_modes.as_dict() == {"app1": "off", "billing:eu": "hash"}
    assert "app1" in s.pii_modes and len(s.pii_modes) == 2 and list(s.pii_modes) == ["app1", "billing:eu"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("app1=0.1,app2=2", "'app2=2': Input should be less than or equal to 1"),
        ("app1=often", "'app1=often': Input should be a valid number"),
        ("app1", "'app1': expected app_id=value"),
        ("=0.1", "'=0.1': expected app_id=value"),
        ("app 1=0.1", "'app 1=0.1': 'app 1' is not an app id"),
        ("*=0.1", "'*=0.1': '*' is not an app id"),
        ("app1=0.1,app1=0.2", "'app1=0.2': app 'app1' is listed twice"),
    ],
)
def test_a_bad_entry_is_refused_with_the_entry_named(monkeypatch, text, message):
    monkeypatch.setenv("LOOKOUT_TEST_SAMPLE_RATES", text)
    with pytest.raises(ValidationError) as info:
        Example()
    error = info.value.errors()[0]
    assert error["loc"] == ("sample_rates",)
    assert message in error["msg"]


def test_every_bad_entry_is_named_at_once():
    with pytest.raises(ValidationError) as info:
        Example.model_validate({"pii_modes": "a=off,b=loud,c=hash,d=quiet"})
    msg = info.value.errors()[0]["msg"]
    assert msg.startswith("bad entries 'b=loud': ") and "'d=quiet': " in msg and "'a=off'" not in msg


def test_mappings_and_maps_are_validated_too():
    s = Example.model_validate({"sample_rates": {"a": "0.25"}})
    assert s.sample_rates == {"a": 0.25}
    assert Example.model_validate({"sample_rates": s.sample_rates}).sample_rates == s.sample_rates
    with pytest.raises(ValidationError, match=r"'a=1\.5'"):
        Example.model_validate({"sample_rates": {"a": 1.5}})


def test_the_map_writes_itself_back_as_the_text_it_reads():
    s = Example.model_validate({"sample_rates": "a=0.1,b=1", "pii_modes": "a=hash"})
    assert str(s.sample_rates) == "a=0.1,b=1.0"
    assert s.model_dump(mode="json") == {"sample_rates": "a=0.1,b=1.0", "pii_modes": "a=hash"}
    # The embedded stack copies settings between classes through model_dump().
    assert Example(**s.model_dump()) == s
    assert Example.model_validate_json(s.model_dump_json()) == s
    # The README's settings table shows str(default): an empty map shows nothing.
    assert str(Example.model_fields["sample_rates"].default) == ""


def test_the_json_schema_describes_the_text_form():
    from pydantic import TypeAdapter

    assert TypeAdapter(AppMap[Rate]).json_schema() == {"type": "string"}


def test_the_map_cannot_be_changed_in_place():
    m = AppMap({"a": 1})
    with pytest.raises(TypeError):
        m["b"] = 2  # type: ignore[index]
    assert m.items() == [("a", 1)] and repr(m) == "AppMap({'a': 1})"
