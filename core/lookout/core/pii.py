"""PII redaction, applied by ingest before an event is produced or stored (Kafka included).

Detectors: email addresses, phone numbers, payment card numbers (Luhn), IBANs (ISO 13616
mod-97), IPv4 and IPv6 addresses (validated by `ipaddress`). Each app runs in one mode:

- off:  texts pass through untouched.
- mask: each finding becomes its kind, e.g. `[EMAIL]`.
- hash: each finding becomes its kind and a keyed HMAC of its normalised value, e.g.
  `[EMAIL:1a2b3c4d5e]`, so one address gives one token everywhere and joins stay possible
  without the address being recoverable by anyone who lacks the secret.

Any service that stores text an end user or a reviewer wrote redacts it the same way, with
the app's policy: `PiiPolicy.from_settings(...)` once, then `policy.redact_text(app_id, text)`
per text (`policy.redact(app_id, text)` also gives the counts); `redact_call` does every
free-text field of an `LlmCall`.

Texts are hostile: a 1 MB answer can be nothing but addresses. So the cost of a text is
linear in its length whatever it holds: every pattern is compiled once and built so that
no input makes it backtrack more than a bounded amount per character (a look-behind makes
a pattern fail at once inside a run of characters, and no quantified group can match the
same text two ways), findings are merged in one sweep per detector, and each detector is
skipped when a gate shows it cannot match: character counts, then a substring test on the
text's bytes mapped to character classes (no e-mail scan without '@', no card scan without
13 digits in a row once separators are dropped, ...), all at C speed. A gate only ever
skips a detector that would have found nothing (tests/test_pii_gates.py compares with every
detector run on real and generated text). tests/test_pii.py keeps the
adversarial inputs (long runs of digits, colons, "+1 ", "a@b.cc ") linear.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import operator
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal, get_args, overload

from .events import LlmCall, update_in_place

Mode = Literal["off", "mask", "hash"]
MODES: tuple[str, ...] = get_args(Mode)
Kind = Literal["email", "phone", "card", "iban", "ip"]

# Field limits of events.LlmCall: a hash token can be longer than what it replaces, and a
# redacted value over the limit would fail validation downstream (the sink re-reads it).
_SHORT_TEXT_MAX = 1024
_LONG_TEXT_MAX = 1_000_000

# A hash-mode secret shorter than this is guessable, which would make tokens reversible
# for low-entropy values such as phone numbers.
MIN_SECRET_BYTES = 16


@dataclass(frozen=True)
class Redaction:
    text: str
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


# ---------------------------------------------------------------------------------------
# Detectors. Each yields (start, end, normalised value) for the findings it accepts, or
# value None for a span it claims without redacting (see _ibans).

# The scanned patterns begin with a plain character (class) and only then look behind
# that character: a leading look-behind would keep Python's re from skipping ahead to the
# next possible first character, which made each scan several times slower.

# Emails are found from each '@', so a text costs one str.find unless it has one. The local
# part takes the characters people's addresses have (O'Brien's too), at most 64 of them.
_EMAIL_LOCAL_PUNCT = frozenset("_.%+'-")
# The same characters in ASCII, for str.rstrip to walk back over at C speed.
_EMAIL_LOCAL_ASCII = "".join(sorted(_EMAIL_LOCAL_PUNCT)) + "".join(map(chr, range(48, 58))) + "".join(
    chr(c) for c in range(65, 123) if chr(c).isalpha())
_EMAIL_LOCAL_MAX = 64
_EMAIL_DOMAIN = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}(?![\w-])")

# 13-19 digits, single spaces, dashes or dots between them. The look-behind keeps decimals,
# "+CC" phone numbers and the tail of longer identifiers out; letters may touch the number
# ("card4111..."), digits and underscores may not (ids such as "ord_4111...").
_CARD = re.compile(r"\d(?<![\d_+.-]\d)(?:[ .-]?\d){12,18}(?![\d_])")
_DIGIT_RUN = re.compile(r"\d+")
# How issuers print numbers: 4-4-4-4 (16, up to 19 with a last group), Amex 4-6-5, Diners
# 4-6-4, old Visa 4-4-5. Dotted numbers must follow one (so decimals never match), and a
# grouped candidate that fails Luhn may drop up to two stray groups at either end to find one.
_CARD_LAYOUTS = frozenset(
    {(4, 4, 4, 4), (4, 4, 4, 4, 1), (4, 4, 4, 4, 2), (4, 4, 4, 4, 3), (4, 6, 5), (4, 6, 4), (4, 4, 5),
     (4, 4, 4, 1), (4, 4, 4, 2), (4, 4, 4, 3)}
)  # fmt: skip
_CARD_STRAY_GROUPS = 2
# A number glued to letters inside a hex token ("deadbeef4111...") is part of an id or a hash.
_HEX_CHARS = frozenset("0123456789abcdefABCDEF")
_GLUE_WINDOW = 64

_IBAN = re.compile(r"[A-Z](?<![A-Za-z0-9][A-Z])[A-Z]\d{2}(?: ?[A-Z0-9]){11,30}")
# People type IBANs in lower case too; in lower case only countries of the registry count,
# so running text ("at12 ...") does not get checked as one.
_IBAN_LOWER = re.compile(r"[a-z](?<![A-Za-z0-9][a-z])[a-z]\d{2}(?: ?[a-z0-9]){11,30}")

_IPV4 = re.compile(r"\d(?<![\w.]\d)\d{0,2}(?:\.\d{1,3}){3}(?!\.?\d)(?!\w)")
# IPv6 candidates are found from a cheap literal-led scout (":db8:", "::") and matched
# from the hex digits just before it.
_IPV6_SCOUT = re.compile(r":[0-9A-Fa-f]{0,4}:")
_HEX = frozenset("0123456789abcdefABCDEF")
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|\d{1,3}(?:\.\d{1,3}){3})?(?![\w:.])")

# International: "+CC" then groups, optional "(0)" or "(area)". National: an area group
# (optionally in parentheses) and at least one more group, every group 2-4 digits, or a
# trunk-prefixed "0170 1234567" / "0170/1234567". Bare digit runs are never phones, so
# token counts, ids and timestamps stay as they are.
_PHONE_INTL = re.compile(r"\+(?<![\w+]\+)\d{1,4}(?:[ .-]?\(\d{1,5}\))?(?:[ .-]?\d+)*")
_PHONE_NATIONAL = re.compile(
    r"[(\d](?<![\w+./-][(\d])(?<!\d[ .,-][(\d])"
    r"(?:(?<=\()\d{2,5}\)[ .-]?\d{2,4}(?:[ .-]\d{2,4})*"
    r"|(?<=\d)\d{1,4}[ .-]\d{2,4}(?:[ .-]\d{2,4})*"
    r"|(?<=0)\d{2,4}[ /-]\d{5,8})"
    r"(?!\w)"
)
_DATE_PREFIX = re.compile(
    r"(?:19|20)\d\d[-./ ]\d{1,2}[-./ ]\d{1,2}(?!\d)|\d{1,2}[-./ ]\d{1,2}[-./ ](?:19|20)\d\d(?!\d)"
)
_NOT_DIGIT = re.compile(r"\D")

# ISO 13616 registry: IBAN length per country. A country missing here is still accepted
# on the generic rule (15-34 characters and mod-97), so the table only sharpens matching.
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18,
    "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24,
    "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24,
    "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip


# Luhn: every second digit from the right is doubled, and a doubled digit over 9 loses 9.
_LUHN_DOUBLED = str.maketrans("0123456789", "0246813579")


def luhn_ok(digits: str) -> bool:
    backwards = digits[::-1]
    total = sum(map(int, backwards[0::2])) + sum(map(int, backwards[1::2].translate(_LUHN_DOUBLED)))
    return total % 10 == 0


# ISO 13616 / ISO 7064: letters count as 10..35.
_IBAN_NUMBERS = {ord(ch): str(10 + i) for i, ch in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZ")}


def iban_ok(compact: str) -> bool:
    """ISO 13616 check: move the first four characters to the end, letters to 10..35, mod 97 == 1."""
    expected = _IBAN_LENGTHS.get(compact[:2])
    if expected is not None and len(compact) != expected:
        return False
    rearranged = (compact[4:] + compact[:4]).translate(_IBAN_NUMBERS)
    return rearranged.isdigit() and int(rearranged) % 97 == 1


def _is_local_char(ch: str) -> bool:
    return ch.isalnum() or ch in _EMAIL_LOCAL_PUNCT


def _emails(text: str) -> Iterator[tuple[int, int, str]]:
    at = text.find("@")
    while at != -1:
        # Walk back over the local part: at most 64 characters, whatever precedes them
        # (ASCII ones in one step; from a non-ASCII one on, character by character).
        stop = max(0, at - _EMAIL_LOCAL_MAX)
        start = stop + len(text[stop:at].rstrip(_EMAIL_LOCAL_ASCII))
        while start > stop and _is_local_char(text[start - 1]):
            start -= 1
        too_long = start == stop and start > 0 and _is_local_char(text[start - 1])
        # Quotes and dots around a word are punctuation, not the address: 'bob@x.org'.
        while start < at and text[start] in "'.":
            start += 1
        domain = None if too_long or start == at else _EMAIL_DOMAIN.match(text, at + 1)
        if domain is not None:
            yield start, domain.end(), text[start : domain.end()].lower()
            at = text.find("@", domain.end())
        else:
            at = text.find("@", at + 1)


def _card_ok(digits: str) -> bool:
    # Issuer numbers start with 2-6; this keeps millisecond/nanosecond timestamps and
    # most counters (leading 1) out even when they happen to pass Luhn.
    return 13 <= len(digits) <= 19 and "2" <= digits[0] <= "6" and luhn_ok(digits)


def _card_in(raw: str) -> tuple[int, int, str] | None:
    """The card number in a candidate, as (start, end, digits) within it."""
    if raw.isdigit():
        return (0, len(raw), raw) if _card_ok(raw) else None
    digits = _NOT_DIGIT.sub("", raw)
    dotted = "." in raw
    # Layouts have 3-5 groups, so only 4-9 groups can hold one after dropping stray ones.
    trimmable = 4 <= len(raw) - len(digits) + 1 <= 5 + 2 * _CARD_STRAY_GROUPS
    if not dotted and not trimmable:
        return (0, len(raw), digits) if _card_ok(digits) else None
    groups = [(m.start(), m.end()) for m in _DIGIT_RUN.finditer(raw)]
    separators = {raw[end] for _, end in groups[:-1]}
    layout = tuple(end - start for start, end in groups)
    if dotted and (len(separators) > 1 or layout not in _CARD_LAYOUTS):
        return None
    if _card_ok(digits):
        return 0, len(raw), digits
    # Grouped and failing: maybe a number before or after it was caught up ("12 4111 ...").
    if len(separators) != 1 or not trimmable:
        return None
    for front in range(_CARD_STRAY_GROUPS + 1):
        for back in range(_CARD_STRAY_GROUPS + 1):
            if (front or back) and layout[front : len(layout) - back] in _CARD_LAYOUTS:
                kept = groups[front : len(groups) - back]
                digits = "".join(raw[start:end] for start, end in kept)
                if _card_ok(digits):
                    return kept[0][0], kept[-1][1], digits
    return None


_HEX_RUN = re.compile(r"[0-9A-Fa-f]*")


def _in_hex_token(text: str, start: int, end: int) -> bool:
    """Whether text[start:end] sits inside a token of hex characters only (an id, a digest),
    looking at most _GLUE_WINDOW characters either side so a long token costs no more."""
    before = text[max(0, start - _GLUE_WINDOW) : start][::-1]
    left = _HEX_RUN.match(before).end()  # type: ignore[union-attr]
    if left < len(before) and before[left].isalnum():
        return False
    right = _HEX_RUN.match(text, end, end + _GLUE_WINDOW).end()  # type: ignore[union-attr]
    return not (right < len(text) and right < end + _GLUE_WINDOW and text[right].isalnum())


def _cards(text: str) -> Iterator[tuple[int, int, str]]:
    for m in _CARD.finditer(text):
        found = _card_in(m.group())
        if found is None:
            continue
        start, end = m.start() + found[0], m.start() + found[1]
        glued = (start and text[start - 1].isalpha()) or (end < len(text) and text[end].isalpha())
        if glued and _in_hex_token(text, start, end):
            continue
        yield start, end, found[2]


def _ibans(text: str) -> Iterator[tuple[int, int, str | None]]:
    # An IBAN-shaped text that fails the check is claimed with value None: its digits are
    # a mistyped account number or a reference, not a card or phone number.
    yield from _iban_matches(text, _IBAN, claim_failures=True)


def _lowercase_ibans(text: str) -> Iterator[tuple[int, int, str | None]]:
    yield from _iban_matches(text, _IBAN_LOWER, claim_failures=False)


def _iban_matches(
    text: str, pattern: re.Pattern[str], *, claim_failures: bool
) -> Iterator[tuple[int, int, str | None]]:
    for m in pattern.finditer(text):
        raw = m.group()
        compact = raw.replace(" ", "").upper()
        known = _IBAN_LENGTHS.get(compact[:2])
        if known is None and not claim_failures:
            continue
        # The pattern is greedy and may run into the next word ("... 00 2024"); cut it to
        # the country's length and require the cut to fall on a word boundary.
        length = known or len(compact)
        if len(compact) < length:
            if claim_failures:
                yield m.start(), m.end(), None
            continue
        end, seen = 0, 0
        while seen < length:
            if raw[end] != " ":
                seen += 1
            end += 1
        stop = m.start() + end
        compact = compact[:length]
        if (stop < len(text) and text[stop].isalnum()) or not iban_ok(compact):
            if claim_failures:
                yield m.start(), stop, None
        else:
            yield m.start(), stop, compact


def _ipv4s(text: str) -> Iterator[tuple[int, int, str]]:
    for m in _IPV4.finditer(text):
        # What ipaddress.IPv4Address accepts (octets <= 255, no leading zeros), far cheaper.
        raw = m.group()
        if all(int(part) <= 255 and (len(part) == 1 or part[0] != "0") for part in raw.split(".")):
            yield m.start(), m.end(), raw


def _ipv6s(text: str) -> Iterator[tuple[int, int, str]]:
    pos = 0
    while (hit := _IPV6_SCOUT.search(text, pos)) is not None:
        start = hit.start()
        while start > 0 and hit.start() - start < 4 and text[start - 1] in _HEX:
            start -= 1
        m = _IPV6.match(text, start)
        if m is None:
            pos = hit.start() + 1
            continue
        pos = m.end()
        raw = m.group()
        # Fewer than three groups is "::1", "fe80::1" or, far more often, a Python slice
        # like "a[1::2]": none of them identify anyone.
        if sum(2 if "." in part else 1 for part in raw.split(":") if part) < 3:
            continue
        try:
            ip = ipaddress.IPv6Address(raw)
        except ValueError:
            continue
        yield m.start(), m.end(), str(ip)


def _international_phones(text: str) -> Iterator[tuple[int, int, str]]:
    for m in _PHONE_INTL.finditer(text):
        digits = _NOT_DIGIT.sub("", m.group())
        # E.164 allows at most 15 digits; fewer than 9 is a signed quantity ("+1500000").
        if 9 <= len(digits) <= 15:
            yield m.start(), m.end(), "+" + digits


def _national_phones(text: str) -> Iterator[tuple[int, int, str]]:
    for m in _PHONE_NATIONAL.finditer(text):
        raw = m.group()
        digits = _NOT_DIGIT.sub("", raw)
        if 9 <= len(digits) <= 12 and not _DATE_PREFIX.match(raw):
            yield m.start(), m.end(), digits


@dataclass(frozen=True)
class _Detector:
    kind: Kind
    find: Callable[[str], Iterator[tuple[int, int, str | None]]]


# Order is priority: a finding that overlaps an earlier one is dropped, so the digits of
# an IBAN or an IP address never come out a second time as a card or a phone number.
_EMAIL_D = _Detector("email", _emails)
_IBAN_D = _Detector("iban", _ibans)
_IBAN_LOWER_D = _Detector("iban", _lowercase_ibans)
_CARD_D = _Detector("card", _cards)
_IPV6_D = _Detector("ip", _ipv6s)
_IPV4_D = _Detector("ip", _ipv4s)
_PHONE_INTL_D = _Detector("phone", _international_phones)
_PHONE_NATIONAL_D = _Detector("phone", _national_phones)
# Every detector in priority order; _detectors_for picks those that can match a given text.
_ALL_DETECTORS = (_EMAIL_D, _IBAN_D, _IBAN_LOWER_D, _CARD_D, _IPV6_D, _IPV4_D, _PHONE_INTL_D, _PHONE_NATIONAL_D)

# No detector can match a text without one of these (IPv6 needs ':'; the rest '@' or digits).
_MAY_HOLD_PII = re.compile(r"[@:\d]")

# Gates: a necessary condition of each detector, tested before it scans (a scan costs far
# more than the test, and most texts with digits hold no card, IBAN or phone number). The
# tests run on the text's UTF-8 bytes mapped to character classes, where each condition is
# a substring search (C speed, no regular expression). Every byte of a non-ASCII character
# maps to the digit class, since \d also matches other scripts' digits: a gate may let
# through a text its detector then finds nothing in, never the other way round.
_ASCII_DIGITS = b"0123456789"
_NOT_ASCII_DIGIT = bytes(b for b in range(256) if b not in _ASCII_DIGITS)


def _byte_classes(classes: dict[bytes, bytes], default: bytes) -> bytes:
    table = bytearray(default * 256)
    for members, cls in classes.items():
        for b in members:
            table[b] = cls[0]
    table[0x80:] = b"0" * 128
    return bytes(table)


_UPPER, _LOWER = bytes(range(65, 91)), bytes(range(97, 123))
# Letters by case, digits and dots: "AA00" is where an IBAN starts, "aa00" a lower-case
# one, "0.0" is inside every IPv4 address.
_SHAPES = _byte_classes({_UPPER: b"A", _LOWER: b"a", _ASCII_DIGITS: b"0", b".": b"."}, b" ")
# Digits with the separators a card or phone number may hold deleted: a card is 13 digits
# in a row of this, a phone number 9 (its separators are among " .-/()").
_NUMBER_SEPARATORS = b" .-/()"
_RUNS = _byte_classes({_ASCII_DIGITS: b"0"}, b"x")
_CARD_RUN, _PHONE_RUN = b"0" * 13, b"0" * 9


def _iban_start(start: bytes, shapes: bytes, text: str) -> bool:
    """Whether two letters and two digits stand where an IBAN may begin: at the start or
    after a character that is no ASCII letter or digit (a non-ASCII one may be either here,
    so such a text needs only the four)."""
    if start not in shapes:
        return False
    return (not text.isascii() or shapes.startswith(start) or b" " + start in shapes
            or b"." + start in shapes)


def _detectors_for(text: str) -> list[_Detector]:
    """The detectors that can possibly match: counts first, then each one's gate."""
    out: list[_Detector] = []
    if "@" in text:
        out.append(_EMAIL_D)
    raw = text.encode("utf-8", "surrogatepass")
    # The characters \d matches: in ASCII text its digits (in UTF-8 a byte below 0x80 is the
    # ASCII character itself); in other text the digits of every script too.
    digits = len(raw.translate(None, _NOT_ASCII_DIGIT)) if text.isascii() else len(_NOT_DIGIT.sub("", text))
    colons = text.count(":")
    dots = text.count(".") if digits >= 4 else 0
    if digits < 7 and colons < 2 and dots < 3:
        return out
    shapes = raw.translate(_SHAPES)
    runs = raw.translate(_RUNS, _NUMBER_SEPARATORS) if digits >= 7 else b""
    if digits >= 7:
        if _iban_start(b"AA00", shapes, text):
            out.append(_IBAN_D)
        if _iban_start(b"aa00", shapes, text):
            out.append(_IBAN_LOWER_D)
        if _CARD_RUN in runs:
            out.append(_CARD_D)
    if colons >= 2:
        out.append(_IPV6_D)
    if dots >= 3 and b"0.0" in shapes:
        out.append(_IPV4_D)
    if digits >= 9 and _PHONE_RUN in runs:
        if "+" in text:
            out.append(_PHONE_INTL_D)
        out.append(_PHONE_NATIONAL_D)
    return out


Finding = tuple[int, int, Kind, str | None]


_start = operator.itemgetter(0)


def _merge(claimed: list[Finding], found: Iterable[tuple[int, int, str | None]], kind: Kind) -> list[Finding]:
    """`claimed` (sorted, non-overlapping) plus each new finding that overlaps nothing before
    it, in one sweep: the cost is linear in the findings, however many a text holds."""
    out: list[Finding] = []
    i, n = 0, len(claimed)
    # Detectors yield in text order; sorting an ordered list is linear and makes sure of it.
    for start, end, value in sorted(found, key=_start):
        while i < n and claimed[i][1] <= start:
            out.append(claimed[i])
            i += 1
        if (i < n and claimed[i][0] < end) or (out and out[-1][1] > start):
            continue
        out.append((start, end, kind, value))
    out.extend(claimed[i:])
    return out


def find_pii(text: str) -> list[tuple[int, int, Kind, str]]:
    """Non-overlapping findings as (start, end, kind, normalised value), in text order."""
    if not _MAY_HOLD_PII.search(text):
        return []
    return _findings(text)


# "a@b.cc" and "1::2:3"; every other kind is longer (IPv4 7, phones 9 digits, cards 13).
_SHORTEST_FINDING = 6


def _findings(text: str) -> list[tuple[int, int, Kind, str]]:
    """find_pii of a text that holds '@', ':' or a digit."""
    if len(text) < _SHORTEST_FINDING:  # a metadata value such as "123"
        return []
    detectors = _detectors_for(text)
    if not detectors:
        return []
    claimed: list[Finding] = []
    for detector in detectors:
        claimed = _merge(claimed, detector.find(text), detector.kind)
    return [f for f in claimed if f[3] is not None]  # type: ignore[misc]


# ---------------------------------------------------------------------------------------


def _check_mode(mode: str) -> Mode:
    if mode not in MODES:
        raise ValueError(f"PII mode must be one of {', '.join(MODES)}, got {mode!r}")
    return mode  # type: ignore[return-value]


class Redactor:
    """Redacts texts in one mode. Stateless after construction, so one instance serves every thread."""

    def __init__(self, mode: str, secret: bytes = b"") -> None:
        self.mode: Mode = _check_mode(mode)
        if self.mode == "hash" and len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"PII hash mode needs a secret of at least {MIN_SECRET_BYTES} bytes")
        self._secret = secret

    def token(self, kind: Kind, value: str) -> str:
        if self.mode == "hash":
            # The kind is part of the message so a token never equals a pseudonymised id.
            digest = hmac.new(self._secret, f"pii/{kind}\0{value}".encode(), hashlib.sha256).hexdigest()
            return f"[{kind.upper()}:{digest[:10]}]"
        return f"[{kind.upper()}]"

    def redact(self, text: str) -> Redaction:
        if self.mode == "off" or not text or not _MAY_HOLD_PII.search(text):
            return Redaction(text)
        found = _findings(text)
        if not found:
            return Redaction(text)
        return self._replace(text, found)

    def _replace(self, text: str, found: list[tuple[int, int, Kind, str]]) -> Redaction:
        parts: list[str] = []
        counts: dict[str, int] = {}
        # A hostile text repeats one value thousands of times: one HMAC per distinct value.
        tokens: dict[tuple[Kind, str], str] = {}
        pos = 0
        for start, end, kind, value in found:
            parts.append(text[pos:start])
            token = tokens.get((kind, value))
            if token is None:
                token = tokens[(kind, value)] = self.token(kind, value)
            parts.append(token)
            counts[kind] = counts.get(kind, 0) + 1
            pos = end
        parts.append(text[pos:])
        return Redaction("".join(parts), counts)

    def __repr__(self) -> str:  # never shows the secret
        return f"Redactor(mode={self.mode!r})"


def pseudonymise(value: str, secret: bytes) -> str:
    """A stable opaque stand-in for a user or session id: "u_" + 16 hex of HMAC-SHA256."""
    if not secret:
        raise ValueError("pseudonymise needs a non-empty secret; without one the ids could be recovered by guessing")
    return "u_" + hmac.new(secret, f"id\0{value}".encode(), hashlib.sha256).hexdigest()[:16]


@dataclass(frozen=True)
class PiiPolicy:
    """The mode of every app: per_app where listed, else default_mode."""

    default_mode: Mode
    per_app: dict[str, Mode] = field(default_factory=dict)
    secret: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        _check_mode(self.default_mode)
        for app_id, mode in self.per_app.items():
            try:
                _check_mode(mode)
            except ValueError as e:
                raise ValueError(f"app {app_id!r}: {e}") from None
        modes = {self.default_mode, *self.per_app.values()}
        redactors = {mode: Redactor(mode, self.secret) for mode in modes}
        object.__setattr__(self, "_redactors", redactors)

    def for_app(self, app_id: str) -> Redactor:
        return self._redactors[self.per_app.get(app_id, self.default_mode)]  # type: ignore[attr-defined]

    def redact(self, app_id: str, text: str) -> Redaction:
        """`text` redacted in `app_id`'s mode, with the count of each kind found."""
        return self.for_app(app_id).redact(text)

    @overload
    def redact_text(self, app_id: str, text: str, *, max_length: int | None = None) -> str: ...
    @overload
    def redact_text(self, app_id: str, text: None, *, max_length: int | None = None) -> None: ...

    def redact_text(self, app_id: str, text: str | None, *, max_length: int | None = None) -> str | None:
        """`text` as it may be stored for `app_id`: every PII value replaced the way ingest
        replaces it. Call it on any free text an end user or reviewer wrote (thumbs comments,
        reviewer notes, corrected answers) before producing or storing it. None stays None.
        `max_length` cuts the result to a field's limit (hash tokens are longer than some
        values they replace); cutting a token reveals nothing."""
        if text is None:
            return None
        redacted = self.for_app(app_id).redact(text).text
        return redacted if max_length is None else _fit(redacted, max_length)

    @classmethod
    def from_settings(cls, mode: str, app_modes: str, secret: str) -> PiiPolicy:
        """From the settings strings; app_modes is "app1=off,app2=hash" (blank: none)."""
        default = _check_mode(mode.strip())
        per_app: dict[str, Mode] = {}
        for raw in app_modes.split(","):
            entry = raw.strip()
            if not entry:
                continue
            app_id, sep, app_mode = (part.strip() for part in entry.partition("="))
            if not sep or not app_id or app_mode not in MODES:
                raise ValueError(
                    f"PII app modes: bad entry {entry!r}; expected app_id=mode with mode one of {', '.join(MODES)}"
                )
            if app_id in per_app:
                raise ValueError(f"PII app modes: bad entry {entry!r}; app {app_id!r} is listed twice")
            per_app[app_id] = app_mode  # type: ignore[assignment]
        key = secret.encode()
        if "hash" in {default, *per_app.values()} and len(key) < MIN_SECRET_BYTES:
            raise ValueError(f"PII hash mode needs a secret of at least {MIN_SECRET_BYTES} bytes")
        return cls(default, per_app, key)


def _fit(text: str, limit: int) -> str:
    # Only hash tokens can grow a text, and cutting one short reveals nothing.
    return text if len(text) <= limit else text[:limit]


def redact_call(call: LlmCall, redactor: Redactor) -> tuple[LlmCall, int]:
    """A copy of `call` with every free-text field redacted, and the number of redactions.

    Covers prompt, output, error, reference, each context item, each input message's
    content, name and role, tags, metadata keys and values, provider, and trace/span ids
    (free text on /v1/events; hex ids pass untouched as no detector matches them).
    Identifiers (app_id, model, environment, versions) are restricted to a character set
    at intake and left as they are. The call passed in is not modified.
    """
    update, total = redaction_updates(call, redactor)
    return call.model_copy(update=update), total


def redaction_updates(call: LlmCall, redactor: Redactor, *, owned: bool = False) -> tuple[dict[str, object], int]:
    """What redact_call changes, as a model_copy update ({} when nothing is found), and
    the number of redactions: for a caller that changes more fields and copies once.

    `owned`: the call and its messages are the caller's alone (ingest's worker has just
    validated them for this request), so a message with findings is redacted in place
    instead of copied, and `input` is never in the update (its list is unchanged)."""
    if redactor.mode == "off":
        return {}, 0
    total = 0

    def clean(text: str, limit: int = _LONG_TEXT_MAX) -> str:
        nonlocal total
        if not _MAY_HOLD_PII.search(text):  # most fields of most calls: no detector can match
            return text
        found = _findings(text)
        if not found:
            return text
        total += len(found)
        return _fit(redactor._replace(text, found).text, limit)

    update: dict[str, object] = {}
    for name, limit in _TEXT_FIELDS:
        value = getattr(call, name)
        if value:
            cleaned = clean(value, limit)
            if cleaned is not value:
                update[name] = cleaned
    if call.input:
        messages = []
        changed = False
        for message in call.input:
            fields = {}
            for name, limit in _MESSAGE_FIELDS:
                value = getattr(message, name)
                if value:
                    cleaned = clean(value, limit)
                    if cleaned is not value:
                        fields[name] = cleaned
            if fields:
                if owned:
                    update_in_place(message, fields)
                    continue
                message = message.model_copy(update=fields)
                changed = True
            messages.append(message)
        if changed:
            update["input"] = messages
    if call.context:
        context = [clean(item) for item in call.context]
        if any(a is not b for a, b in zip(context, call.context, strict=True)):
            update["context"] = context
    if call.tags:
        tags = [clean(tag, _SHORT_TEXT_MAX) for tag in call.tags]
        if any(a is not b for a, b in zip(tags, call.tags, strict=True)):
            update["tags"] = tags
    if call.metadata:
        metadata: dict[str, str] = {}
        changed = False
        for key, value in call.metadata.items():
            clean_key, clean_value = clean(key, _SHORT_TEXT_MAX), clean(value, _SHORT_TEXT_MAX)
            changed = changed or clean_key is not key or clean_value is not value
            metadata[_unused_key(clean_key, metadata)] = clean_value
        if changed:
            update["metadata"] = metadata
    return update, total


# (field, limit of events.LlmCall) for the text fields redact_call cleans one by one.
_TEXT_FIELDS = (
    ("prompt", _LONG_TEXT_MAX), ("output", _LONG_TEXT_MAX), ("error", _LONG_TEXT_MAX),
    ("reference", _LONG_TEXT_MAX), ("provider", 64), ("trace_id", 64), ("span_id", 32),
)  # fmt: skip
_MESSAGE_FIELDS = (("content", _LONG_TEXT_MAX), ("name", _SHORT_TEXT_MAX), ("role", 64))


def _unused_key(key: str, taken: dict[str, str]) -> str:
    """Two keys that redact alike ("alice@x.org", "bob@x.org" -> "[EMAIL]") both keep their
    value: the later one gets "#2", "#3"... (at most 256 keys, so this stays cheap)."""
    if key not in taken:
        return key
    n = 2
    while (candidate := f"{_fit(key, _SHORT_TEXT_MAX - 6)}#{n}") in taken:
        n += 1
    return candidate
