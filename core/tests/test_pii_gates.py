"""The redactor's gates (pii._detectors_for) only skip work: a detector a gate leaves out
would have found nothing. Each test compares find_pii with every detector run on the
whole text, on real text people wrote (Debian package descriptions, bench/corpora), on
that text with PII values planted in it, and on generated texts made of the characters the
detectors and gates look at (non-ASCII digits and letters included)."""

from __future__ import annotations

import hashlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.corpora import load
from lookout.core import pii


def every_detector(text: str) -> list[tuple[int, int, str, str]]:
    """find_pii without gates: each detector in priority order on the whole text."""
    claimed: list[pii.Finding] = []
    for detector in pii._ALL_DETECTORS:
        claimed = pii._merge(claimed, detector.find(text), detector.kind)
    return [(s, e, k, v) for s, e, k, v in claimed if v is not None]


def real_texts() -> list[str]:
    corpus = load("debian")
    return [text for item in corpus.items for text in (item.prompt, item.response)]


# Values each detector finds, in the layouts people write them, and near misses.
PLANTED = [
    "alice.o'brien@example.co.uk", "+44 20 7946 0958", "+1 (555) 123-4567", "020 7946 0958", "(030) 1234 5678",
    "0170/1234567", "4111 1111 1111 1111", "4111-1111-1111-1111", "4111.1111.1111.1111", "card4111111111111111",
    "378282246310005", "5555 5555 5555 4444 12", "DE89 3704 0044 0532 0130 00", "de89370400440532013000",
    "GB82WEST12345698765432", "GB82 WEST 1234 5698 7654 33", "10.1.2.3", "192.168.001.1", "2001:db8::8a2e:370:7334",
    "fe80::1", "1.5 km", "2024-01-02 10:30", "v1.2.3.4", "deadbeef4111111111111111", "٤١١١ ١١١١ ١١١١ ١١١١",
    "de٨٩ ٣٧٠٤ ٠٠٤٤ ٠٥٣٢ ٠١٣٠ ٠٠", "é4111111111111111", "ñde89370400440532013000",
]


def planted(text: str, value: str) -> str:
    # Where the value goes depends on the text only, so a rerun tests the same texts.
    at = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % (len(text) + 1)
    return f"{text[:at]} {value} {text[at:]}"


def test_the_gates_change_nothing_on_real_text():
    texts = real_texts()
    assert len(texts) > 1000
    differ = [t for t in texts if pii.find_pii(t) != every_detector(t)]
    assert differ == []


def test_the_gates_change_nothing_on_real_text_with_pii_planted_in_it():
    texts = real_texts()[::7]
    found = 0
    for i, text in enumerate(texts):
        value = PLANTED[i % len(PLANTED)]
        mixed = planted(text, value)
        expected = every_detector(mixed)
        assert pii.find_pii(mixed) == expected, (value, mixed)
        found += len(expected)
    assert found > len(texts) // 2  # the planted values are mostly found, so the comparison means something


def test_each_planted_value_alone_is_found_as_without_gates():
    for value in PLANTED:
        for text in (value, f"x{value}", f"{value}x", f"see: {value}.", f"«{value}»"):
            assert pii.find_pii(text) == every_detector(text), text


# The characters the detectors and gates turn on, ASCII and not.
_ALPHABET = "0123456789 .-/()+@:_'aAbBdDeEfFkKxXzZ\n,;#٣٤é中"


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=_ALPHABET, max_size=80))
def test_the_gates_change_nothing_on_generated_text(text):
    assert pii.find_pii(text) == every_detector(text)


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.sampled_from([*PLANTED, "a", " ", "1", "-", ".", "x@y", "AB12", "ab12", "+", "é"]), max_size=12))
def test_the_gates_change_nothing_on_generated_mixes_of_pii_values(parts):
    text = "".join(parts)
    assert pii.find_pii(text) == every_detector(text)


def test_the_shortest_texts_that_hold_pii_are_still_redacted():
    # Below six characters no detector can match; these six are the shortest that do.
    assert [f[2] for f in pii.find_pii("a@b.cc")] == ["email"]
    assert [f[2] for f in pii.find_pii("1::2:3")] == ["ip"]
