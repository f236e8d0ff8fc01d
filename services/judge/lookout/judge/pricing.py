"""What one judge request costs: explicit per-token prices from settings (a self-hosted or
unlisted model), else the judge model's entry in lookout-core's price table."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from lookout.core.pricing import PriceTable

from .settings import JudgeSettings

log = logging.getLogger(__name__)


@dataclass
class JudgePricer:
    provider: str
    model: str
    table: PriceTable | None = None
    input_per_mtok: float | None = None
    output_per_mtok: float | None = None

    @classmethod
    def from_settings(cls, settings: JudgeSettings) -> JudgePricer:
        explicit = settings.judge_input_per_mtok is not None or settings.judge_output_per_mtok is not None
        table = None if explicit else PriceTable.load(settings.judge_price_table)
        pricer = cls(settings.judge_provider, settings.judge_model, table,
                     settings.judge_input_per_mtok, settings.judge_output_per_mtok)
        if pricer.cost(1000, 1000) is None:
            log.warning(
                "no price for judge model %s/%s: spend is not tracked and a daily budget cannot pause "
                "judging; set LOOKOUT_JUDGE_INPUT_PER_MTOK and LOOKOUT_JUDGE_OUTPUT_PER_MTOK",
                settings.judge_provider, settings.judge_model,
            )
        return pricer

    def cost(self, tokens_in: int | None, tokens_out: int | None) -> float | None:
        if self.table is None:
            if tokens_in is None and tokens_out is None:
                return None
            return ((tokens_in or 0) * (self.input_per_mtok or 0.0)
                    + (tokens_out or 0) * (self.output_per_mtok or 0.0)) / 1_000_000
        return self.table.cost(self.provider, self.model, tokens_in, tokens_out)
