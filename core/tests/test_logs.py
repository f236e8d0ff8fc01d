"""Log lines (logs.py): LOOKOUT_LOG_FORMAT=json writes one JSON object per line with the
`extra` fields a log search needs; text keeps them as key=value; chatty libraries stay quiet."""

from __future__ import annotations

import json
import logging

import pytest
from pydantic import ValidationError

from lookout.core.logs import configure_logging, formatter, step
from lookout.core.settings import CommonSettings


def _record(msg: str, *args, exc: bool = False, **extra) -> logging.LogRecord:
    logger = logging.getLogger("lookout.test")
    exc_info = None
    if exc:
        try:
            raise ValueError("bad batch")
        except ValueError:
            import sys

            exc_info = sys.exc_info()
    return logger.makeRecord("lookout.test", logging.WARNING, __file__, 1, msg, args, exc_info, extra=extra)


def test_json_lines_carry_level_logger_message_and_the_extra_fields():
    line = formatter("json").format(_record("judge call failed after %d tries", 3, event_id="e-1", app_id="shop",
                                            partition=2, tags={"a": object}))
    doc = json.loads(line)
    assert doc["level"] == "WARNING" and doc["logger"] == "lookout.test"
    assert doc["message"] == "judge call failed after 3 tries"
    assert doc["event_id"] == "e-1" and doc["app_id"] == "shop" and doc["partition"] == 2
    assert doc["tags"] == {"a": str(object)}  # not JSON: written with str()
    assert doc["ts"].endswith("+00:00")


def test_a_traceback_or_a_multiline_message_stays_on_one_json_line():
    line = formatter("json").format(_record("first\nsecond", exc=True, run_id="r-9"))
    assert "\n" not in line
    doc = json.loads(line)
    assert doc["message"] == "first\nsecond" and doc["run_id"] == "r-9"
    assert "ValueError: bad batch" in doc["exc"] and doc["exc"].startswith("Traceback")


def test_a_caller_field_never_overwrites_the_lines_own_keys():
    doc = json.loads(formatter("json").format(_record("m", level_hint="x", stream="shop/m1")))
    assert doc["level"] == "WARNING" and doc["stream"] == "shop/m1"


def test_text_lines_append_the_extra_fields_above_the_traceback():
    text = formatter("text").format(_record("handler failed", exc=True, group="lookout-sink"))
    head, _, tail = text.partition("\n")
    assert head.endswith("handler failed group=lookout-sink")
    assert tail.startswith("Traceback") and "ValueError: bad batch" in tail


def test_an_unknown_format_is_refused_naming_the_setting():
    with pytest.raises(ValueError, match="LOOKOUT_LOG_FORMAT: unknown format 'xml'"):
        formatter("xml")
    with pytest.raises(ValidationError, match="log_format"):
        CommonSettings(log_format="xml")  # type: ignore[arg-type]


def test_configure_logging_replaces_its_handler_and_holds_libraries_at_warning(capsys):
    configure_logging("INFO", "text")
    configure_logging("INFO", "json")
    root = logging.getLogger()
    ours = [h for h in root.handlers if getattr(h, "_lookout_handler", False)]
    assert len(ours) == 1
    assert logging.getLogger("aiokafka").level == logging.WARNING
    assert logging.getLogger("transformers").level == logging.WARNING
    configure_logging("DEBUG", "json")
    assert logging.getLogger("aiokafka").level == logging.DEBUG  # DEBUG opens them up
    configure_logging("INFO", "text")


def test_a_coordinator_error_the_kafka_client_retries_itself_is_not_shown_unless_debug(capsys):
    from aiokafka.errors import GroupCoordinatorNotAvailableError

    coordinator = logging.getLogger("aiokafka.consumer.group_coordinator")
    try:
        configure_logging("INFO", "text")
        coordinator.error("Group Coordinator Request failed: %s", GroupCoordinatorNotAvailableError())
        coordinator.error("Unexpected error in coordinator routine")  # a real one still shows
        err = capsys.readouterr().err
        assert "Unexpected error in coordinator routine" in err
        assert "GroupCoordinatorNotAvailable" not in err
        configure_logging("DEBUG", "text")
        coordinator.error("Group Coordinator Request failed: %s", GroupCoordinatorNotAvailableError())
        assert "GroupCoordinatorNotAvailable" in capsys.readouterr().err
    finally:
        configure_logging("INFO", "text")


def test_step_says_what_starts_and_how_long_it_took_or_that_it_failed(caplog):
    caplog.set_level(logging.INFO, logger="lookout.progress")
    with step("loading the encoder", service="drift"):
        pass
    with pytest.raises(RuntimeError), step("opening ClickHouse"):
        raise RuntimeError("locked")
    messages = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert messages[0] == ("INFO", "loading the encoder ...")
    assert messages[1][1].startswith("loading the encoder: done in ")
    assert caplog.records[1].service == "drift" and caplog.records[1].elapsed_s >= 0  # type: ignore[attr-defined]
    assert messages[3][0] == "WARNING" and "opening ClickHouse: failed after" in messages[3][1]
    assert "(RuntimeError)" in messages[3][1]
