"""While the broker is away, the Kafka clients' reconnect errors reach the terminal once per
kind and window, with a count of the rest; other logs pass untouched."""

from __future__ import annotations

import logging

from lookout.stack.quiet_logs import RepeatFilter


def record(name: str, msg: str, *args, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_repeats_of_one_kafka_client_message_are_held_back_and_counted(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("lookout.stack.quiet_logs.time.monotonic", lambda: clock[0])
    quiet = RepeatFilter(window_s=10)
    template = "Unable connect to node with id %s: %s"
    assert quiet.filter(record("aiokafka", template, 1, "refused"))
    assert not any(quiet.filter(record("aiokafka", template, 1, "refused")) for _ in range(500))
    assert quiet.filter(record("aiokafka", "Unable to update metadata from %s", [1]))  # another kind
    clock[0] += 11
    again = record("aiokafka", template, 1, "refused")
    assert quiet.filter(again)
    assert again.getMessage() == "Unable connect to node with id 1: refused (and 500 more like it in the last 10 s)"


def test_lookouts_own_logs_and_kafka_info_lines_are_never_held_back():
    quiet = RepeatFilter(window_s=10)
    assert all(quiet.filter(record("lookout.stack.broker", "the %s broker exited", "kafka")) for _ in range(5))
    assert all(quiet.filter(record("aiokafka.consumer", "Joined group %s", "g", level=logging.INFO))
               for _ in range(5))
