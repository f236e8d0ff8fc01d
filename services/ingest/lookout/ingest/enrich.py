"""What ingest adds to an accepted call before it is produced: PII redaction (before
anything is stored, Kafka included), pseudonymous user/session ids, and cost_usd from the
versioned price table when the client sent none."""

from __future__ import annotations

from dataclasses import dataclass

from lookout.core.app_map import AppMap
from lookout.core.events import LlmCall
from lookout.core.pii import PiiPolicy, pseudonymise, redaction_updates
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
        updates, redactions = redaction_updates(call, self.policy.for_app(call.app_id))
        added: dict[str, str] = {}
        if redactions:
            added["lookout.pii_redactions"] = str(redactions)
        if call.user_id:
            updates["user_id"] = pseudonymise(call.user_id, self.secret)
        if call.session_id:
            updates["session_id"] = pseudonymise(call.session_id, self.secret)
        if call.cost_usd is None:
            cost = self.prices.cost(call.provider, call.model, call.tokens_in, call.tokens_out)
            if cost is not None:
                updates["cost_usd"] = cost
                added["lookout.price_table"] = self.prices.version
        if added:
            metadata = updates.get("metadata", call.metadata)
            updates["metadata"] = {**metadata, **added}  # type: ignore[dict-item]
        if updates:
            call = call.model_copy(update=updates)
        return call, redactions
