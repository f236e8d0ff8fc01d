"""Knobs of the dashboards and alert rules, read from LOOKOUT_* environment variables.

Grafana does not expand environment variables inside an alert query's model (it would eat
the plugin's `$__timeFilter` macros), so thresholds are applied when the provisioning
files are generated: `LOOKOUT_ALERT_ERROR_RATE=0.1 python -m lookout.dashboards.generate --out DIR`.
The committed files are generated with the defaults below.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class DashboardSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOOKOUT_", extra="ignore")

    daily_budget_usd: float = Field(default=100.0, gt=0, description="LLM spend budget per UTC day, all apps together.")

    alert_cost_burn: float = Field(
        default=1.0, gt=0,
        description="Cost burn alert: the last hour's spend, extrapolated to a day, over this share of the budget.",
    )
    alert_token_spike: float = Field(
        default=3.0, gt=1,
        description="Token spike alert: tokens/min of the last 10 min over this multiple of the 24 h norm."
    )
    alert_error_rate: float = Field(
        default=0.05, gt=0, le=1, description="Error rate alert: share of failed calls, 5 min."
    )
    alert_latency_p99_ms: float = Field(default=10_000.0, gt=0, description="Latency alert: p99 latency in ms, 5 min.")
    alert_toxicity_rate: float = Field(
        default=0.05, gt=0, le=1,
        description="Toxicity alert: share of scored calls with a toxicity score >= 0.5, 15 min."
    )
    alert_drift_windows: int = Field(
        default=3, ge=1, description="Sustained drift alert: this many consecutive drifted windows of one signal."
    )
    alert_thumbs_down_rate: float = Field(
        default=0.3, gt=0, le=1, description="Thumbs-down surge alert: share of thumbs-down votes, 30 min."
    )
    alert_judge_kappa: float = Field(
        default=0.4, gt=-1, le=1,
        description="Judge agreement alert: the pass/fail kappa of a rubric's judge against reviewers below this "
        "(0.4: 'fair' agreement at best, Landis & Koch), on the judge's rolling window of reviews.",
    )
    alert_judge_min_pairs: int = Field(
        default=30, ge=2,
        description="The judge agreement alert stays quiet below this many reviewed calls in the window."
    )
    alert_min_calls: int = Field(
        default=20, ge=1, description="Rate alerts stay quiet on streams with fewer events than this."
    )
    alert_min_votes: int = Field(
        default=10, ge=1, description="The thumbs-down alert stays quiet below this many votes."
    )
