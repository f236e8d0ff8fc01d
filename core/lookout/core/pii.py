"""PII redaction, applied by ingest before an event is produced or stored (Kafka included).

Detectors: email addresses, phone numbers, payment card numbers (Luhn), IBANs (ISO 13616
mod-97), IPv4 and IPv6 addresses (validated by `ipaddress`). Each app runs in one mode:

- off:  texts pass through untouched.
- mask: each finding becomes its kind, e.g. `[EMAIL]`.
- hash: each finding becomes its kind and a keyed HMAC of its normalised value, e.g.
  `[EMAIL:1a2b3c4d5e]`, so one address gives one token everywhere and joins stay possible
  without the address being recoverable by anyone who lacks the secret.

This runs on the ingest hot path, so every pattern is compiled once, each detector is
skipped when a cheap character count shows it cannot match, and every pattern starts with
a look-behind that makes it fail at once inside a run of characters (no quadratic rescans).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal, get_args

from .events import LlmCall

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

# Emails are found from each '@', so a text costs one str.find unless it has one.
_EMAIL_LOCAL = re.compile(r"[\w.%+-]{1,64}\Z")
_EMAIL_LOCAL_CHAR = re.compile(r"[\w.%+-]")
_EMAIL_DOMAIN = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}(?![\w-])")

# 13-19 digits, single spaces or dashes between them. The look-behind keeps decimals,
# "+CC" phone numbers and the tail of longer identifiers out.
_CARD = re.compile(r"\d(?<![\w+.-]\d)(?:[ -]?\d){12,18}(?!\w)")

_IBAN = re.compile(r"[A-Z](?<![A-Za-z0-9][A-Z])[A-Z]\d{2}(?: ?[A-Z0-9]){11,30}")

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

_DIGIT_CHARS = "0123456789"

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


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(compact: str) -> bool:
    """ISO 13616 check: move the first four characters to the end, letters to 10..35, mod 97 == 1."""
    expected = _IBAN_LENGTHS.get(compact[:2])
    if expected is not None and len(compact) != expected:
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _emails(text: str) -> Iterator[tuple[int, int, str]]:
    at = text.find("@")
    while at != -1:
        local = _EMAIL_LOCAL.search(text, max(0, at - 65), at)
        domain = _EMAIL_DOMAIN.match(text, at + 1)
        if local and domain and not (local.start() and _EMAIL_LOCAL_CHAR.match(text, local.start() - 1)):
            yield local.start(), domain.end(), text[local.start() : domain.end()].lower()
            at = text.find("@", domain.end())
        else:
            at = text.find("@", at + 1)


def _cards(text: str) -> Iterator[tuple[int, int, str]]:
    for m in _CARD.finditer(text):
        digits = _NOT_DIGIT.sub("", m.group())
        # Issuer numbers start with 2-6; this keeps millisecond/nanosecond timestamps and
        # most counters (leading 1) out even when they happen to pass Luhn.
        if "2" <= digits[0] <= "6" and luhn_ok(digits):
            yield m.start(), m.end(), digits


def _ibans(text: str) -> Iterator[tuple[int, int, str | None]]:
    # An IBAN-shaped text that fails the check is claimed with value None: its digits are
    # a mistyped account number or a reference, not a card or phone number.
    for m in _IBAN.finditer(text):
        raw = m.group()
        compact = raw.replace(" ", "")
        # The pattern is greedy and may run into the next word ("... 00 2024"); cut it to
        # the country's length and require the cut to fall on a word boundary.
        length = _IBAN_LENGTHS.get(compact[:2], len(compact))
        if len(compact) < length:
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
            yield m.start(), stop, None
        else:
            yield m.start(), stop, compact


def _ipv4s(text: str) -> Iterator[tuple[int, int, str]]:
    for m in _IPV4.finditer(text):
        try:
            ip = ipaddress.IPv4Address(m.group())
        except ValueError:
            continue
        yield m.start(), m.end(), str(ip)


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


def _phones(text: str) -> Iterator[tuple[int, int, str]]:
    for m in _PHONE_INTL.finditer(text):
        digits = _NOT_DIGIT.sub("", m.group())
        # E.164 allows at most 15 digits; fewer than 9 is a signed quantity ("+1500000").
        if 9 <= len(digits) <= 15:
            yield m.start(), m.end(), "+" + digits
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
_CARD_D = _Detector("card", _cards)
_IPV6_D = _Detector("ip", _ipv6s)
_IPV4_D = _Detector("ip", _ipv4s)
_PHONE_D = _Detector("phone", _phones)


def _detectors_for(text: str) -> list[_Detector]:
    """The detectors that can possibly match, from counts that cost far less than a scan."""
    out: list[_Detector] = []
    if "@" in text:
        out.append(_EMAIL_D)
    digits = sum(map(text.count, _DIGIT_CHARS))
    if digits >= 7:
        out += (_IBAN_D, _CARD_D)
    if text.count(":") >= 2:
        out.append(_IPV6_D)
    if digits >= 4 and text.count(".") >= 3:
        out.append(_IPV4_D)
    if digits >= 9:
        out.append(_PHONE_D)
    return out


def find_pii(text: str) -> list[tuple[int, int, Kind, str]]:
    """Non-overlapping findings as (start, end, kind, normalised value), in text order."""
    claimed: list[tuple[int, int, Kind, str | None]] = []
    for detector in _detectors_for(text):
        for start, end, value in detector.find(text):
            if not any(start < e and s < end for s, e, _, _ in claimed):
                claimed.append((start, end, detector.kind, value))
    return sorted((s, e, k, v) for s, e, k, v in claimed if v is not None)


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
        if self.mode == "off" or not text:
            return Redaction(text)
        found = find_pii(text)
        if not found:
            return Redaction(text)
        parts: list[str] = []
        counts: dict[str, int] = {}
        pos = 0
        for start, end, kind, value in found:
            parts.append(text[pos:start])
            parts.append(self.token(kind, value))
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

    Covers prompt, each input message's content, output, error, context items, reference
    and metadata values. The call passed in is not modified.
    """
    if redactor.mode == "off":
        return call.model_copy(), 0
    total = 0

    def clean(text: str, limit: int = _LONG_TEXT_MAX) -> str:
        nonlocal total
        result = redactor.redact(text)
        if not result.counts:
            return text
        total += result.total
        return _fit(result.text, limit)

    update: dict[str, object] = {}
    for name in ("prompt", "output", "error", "reference"):
        value = getattr(call, name)
        if value:
            cleaned = clean(value)
            if cleaned is not value:
                update[name] = cleaned
    if call.input:
        messages = []
        changed = False
        for message in call.input:
            if message.content:
                cleaned = clean(message.content)
                if cleaned is not message.content:
                    message = message.model_copy(update={"content": cleaned})
                    changed = True
            messages.append(message)
        if changed:
            update["input"] = messages
    if call.context:
        context = [clean(item) for item in call.context]
        if any(a is not b for a, b in zip(context, call.context, strict=True)):
            update["context"] = context
    if call.metadata:
        metadata = {k: clean(v, _SHORT_TEXT_MAX) for k, v in call.metadata.items()}
        if any(metadata[k] is not v for k, v in call.metadata.items()):
            update["metadata"] = metadata
    return call.model_copy(update=update), total
