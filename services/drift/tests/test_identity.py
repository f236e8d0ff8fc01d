"""The model identity watch's rule: which sequences of answering identities are a change."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from lookout.drift.identity import Identity, changes, result_of

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def identity(model: str, fingerprint: str, start_h: float, calls: int = 10) -> Identity:
    first = T0 + timedelta(hours=start_h)
    return Identity(model, fingerprint, first, first + timedelta(minutes=30), calls, uuid.uuid4())


def test_one_identity_is_no_change():
    assert changes({("app", "gpt-4o"): [identity("gpt-4o-2024-08-06", "fp_a", 0)]}) == []


def test_a_new_served_model_behind_the_same_name_is_a_change_naming_old_and_new():
    old, new = identity("gpt-4o-2024-08-06", "fp_a", 0, 90), identity("gpt-4o-2024-11-20", "fp_b", 5, 10)
    (change,) = changes({("app", "gpt-4o"): [new, old]})
    assert (change.old, change.new) == (old, new)
    result = result_of(change)
    assert (result.signal, result.method, result.model, result.drifted) == ("model_identity", "identity_change",
                                                                             "gpt-4o", True)
    assert result.details["old"]["model"] == "gpt-4o-2024-08-06" and result.details["new"]["fingerprint"] == "fp_b"
    assert result.examples == [new.first_event] and result.statistic == 0.1
    # Every replica and every poll names the same result: the sink keeps one.
    assert result_of(change).result_id == result.result_id


def test_a_new_fingerprint_of_the_same_model_is_a_change():
    (change,) = changes({("app", "m"): [identity("m", "fp_a", 0), identity("m", "fp_b", 2)]})
    assert (change.old.fingerprint, change.new.fingerprint) == ("fp_a", "fp_b")


def test_calls_that_reported_no_fingerprint_are_not_a_change_of_fingerprint():
    assert changes({("app", "m"): [identity("m", "fp_a", 0), identity("m", "", 1)]}) == []
    assert changes({("app", "m"): [identity("m", "", 0), identity("m", "fp_a", 1)]}) == []


def test_each_requested_name_and_app_is_watched_apart():
    found = {("a", "m"): [identity("m", "fp_a", 0)], ("b", "m"): [identity("m", "fp_b", 1)]}
    assert changes(found) == []
