"""What ingest adds to an accepted call before it is produced: PII redaction (before
anything is stored, Kafka included), pseudonymous user/session ids, and cost_usd from the
versioned price table when the client sent none (prompt-cache reads and writes priced
apart). OTLP trace steps and client evaluations get the same redaction and pseudonyms, so
a session id on a step is the one on its calls."""

from __future__ import annotations

from dataclasses import dataclass

from lookout.core.app_map import AppMap
from lookout.core.events import LlmCall, Score, TraceSpan, update_in_place
from lookout.core.pii import PiiPolicy, Redactor, pseudonymise, redaction_updates
from lookout.core.pricing import PriceTable

from .settings import IngestSettings, PiiMode


@dataclass
class Enricher:
    policy: PiiPolicy
    prices: PriceTable
    secret: bytes

    @classmethod
    def from_settings(cls, settings: IngestSettings) -> Enricher:
        if len(settings.pii_secret) < 16:
            raise ValueError("LOOKOUT_PII_SECRET must be set to a secret of at least 16 characters")
        modes = settings.pii_app_modes
        if not isinstance(modes, AppMap):  # text put in by model_copy, which does not validate
            modes = AppMap.parse(modes, PiiMode)
        return cls(
            policy=PiiPolicy(settings.pii_mode, modes.as_dict(), settings.pii_secret.encode()),
            prices=PriceTable.load(settings.price_table),
            secret=settings.pii_secret.encode(),
        )

    def __call__(self, call: LlmCall) -> tuple[LlmCall, int]:
        """The call as it may be stored, and its redaction count. One copy of the call at
        most (none when nothing changes), and of its metadata only when keys are added."""
        updates, redactions = self.updates(call)
        if updates:
            call = call.model_copy(update=updates)
        return call, redactions

    def apply(self, call: LlmCall, *, own_messages: bool = False) -> int:
        """__call__ for a call nobody else holds (one this worker just validated): changed
        in place, no copy; its redaction count returned. `own_messages`: its messages are
        its own too (validated from JSON, not Message objects that another call may share,
        as OTLP conversion builds them), so they are redacted in place as well."""
        updates, redactions = self.updates(call, owned=own_messages)
        if updates:
            update_in_place(call, updates)
        return redactions

    def updates(self, call: LlmCall, *, owned: bool = False) -> tuple[dict[str, object], int]:
        """What enriching changes in `call` (a model_copy update) and its redaction count;
        `owned` (a call nobody else holds): its messages are redacted in place."""
        updates, redactions = redaction_updates(call, self.policy.for_app(call.app_id), owned=owned)
        added: dict[str, str] = {}
        if redactions:
            added["lookout.pii_redactions"] = str(redactions)
        if call.user_id:
            updates["user_id"] = pseudonymise(call.user_id, self.secret)
        if call.session_id:
            updates["session_id"] = pseudonymise(call.session_id, self.secret)
        if call.cost_usd is None:
            cost = self.prices.cost(call.provider, call.model, call.tokens_in, call.tokens_out,
                                    cache_read=call.tokens_cache_read, cache_write=call.tokens_cache_write)
            if cost is not None:
                updates["cost_usd"] = cost
                added["lookout.price_table"] = self.prices.version
        if added:
            metadata = updates.get("metadata", call.metadata)
            updates["metadata"] = {**metadata, **added}  # type: ignore[dict-item]
        return updates, redactions

    def step(self, step: TraceSpan) -> tuple[TraceSpan, int]:
        """A trace step redacted (texts, error, attribute values) and pseudonymised; an
        embedding or other step with token counts priced."""
        redactor = self.policy.for_app(step.app_id)
        total = 0

        def clean(text: str | None, limit: int) -> str | None:
            nonlocal total
            if not text or redactor.mode == "off":
                return text
            found = _redact(redactor, text, limit)
            total += found[1]
            return found[0]

        updates: dict = {"input": clean(step.input, _LONG), "output": clean(step.output, _LONG),
                         "error": clean(step.error, _LONG),
                         "attributes": {k: clean(v, _SHORT) or "" for k, v in step.attributes.items()}}
        if step.user_id:
            updates["user_id"] = pseudonymise(step.user_id, self.secret)
        if step.session_id:
            updates["session_id"] = pseudonymise(step.session_id, self.secret)
        if step.kind != "llm" and step.cost_usd is None:
            updates["cost_usd"] = self.prices.cost(step.provider, step.model, step.tokens_in, step.tokens_out)
        return step.model_copy(update=updates), total

    def score(self, score: Score) -> tuple[Score, int]:
        """A client evaluation's explanation and label redacted like the call they are about."""
        redactor = self.policy.for_app(score.app_id)
        if redactor.mode == "off":
            return score, 0
        explanation, n = _redact(redactor, score.explanation, _LONG) if score.explanation else (None, 0)
        label, m = _redact(redactor, score.label, _SHORT) if score.label else (None, 0)
        return score.model_copy(update={"explanation": explanation, "label": label}), n + m


_LONG, _SHORT = 1_000_000, 1024


def _redact(redactor: Redactor, text: str, limit: int) -> tuple[str, int]:
    result = redactor.redact(text)
    if not result.counts:
        return text, 0
    return result.text[:limit], result.total
