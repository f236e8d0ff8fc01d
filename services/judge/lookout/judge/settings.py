"""Settings of the judge service. Every field is read from LOOKOUT_<FIELD>."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr

from lookout.core.app_map import AppMap
from lookout.core.settings import CommonSettings, ServerSettings

Rate = Annotated[float, Field(ge=0, le=1)]


class JudgeSettings(CommonSettings, ServerSettings):
    judge_group: str = Field(default="lookout-judge", description="Consumer group of the judge on llm.events.")
    judge_batch_max: int = Field(
        default=256, ge=1, description="Most events the judge scores per batch (one commit per batch)."
    )
    judge_batch_ms: int = Field(default=200, ge=0, description="How long the judge waits to fill a batch.")
    judge_max_poll_interval_s: int = Field(
        default=1800, ge=60,
        description="Longest a batch may take (slow or rate-limited evaluator) before the broker "
        "hands the partitions to another judge.",
    )

    toxicity_backend: Literal["auto", "detoxify", "profanity", "off"] = Field(
        default="auto",
        description="auto: detoxify when LOOKOUT_DETOXIFY_CHECKPOINT is set, else alt-profanity-check "
        "(ships its trained weights). detoxify without a checkpoint uses detoxify's own download.",
    )
    detoxify_model_type: Literal["original", "unbiased", "multilingual", "original-small", "unbiased-small"] = Field(
        default="original", description="Detoxify model type (used when it downloads its own checkpoint)."
    )
    detoxify_checkpoint: str | None = Field(
        default=None, description="Path of a detoxify checkpoint (.ckpt with config + state_dict) for offline use."
    )
    detoxify_hf_config: str | None = Field(
        default=None, description="Local Hugging Face config + tokenizer dir for the checkpoint's base model (offline)."
    )
    detoxify_device: str = Field(default="cpu", description="torch device for detoxify (cpu, cuda, cuda:1...).")
    toxicity_batch_size: int = Field(default=32, ge=1, description="Texts (chunks) per toxicity inference batch.")
    toxicity_max_tokens: int = Field(
        default=512, ge=8, description="Tokens per chunk; longer texts are split and scored as the token-weighted mean "
        "over chunks (see the judge README)."
    )
    toxicity_stride: int = Field(default=32, ge=0, description="Tokens two neighbouring chunks share.")
    # Calibrated in bench/bench_toxicity.py on real text: on benign calls (Debian package
    # descriptions as answers, their synopses as prompts) 0.19 % of dev / 0.15 % of held-out
    # calls reach 0.5, a negligible extra judging load; 75 % of held-out insults do.
    toxic_threshold: float = Field(
        default=0.5, ge=0, le=1,
        description="A call with any toxicity score at or above this is judged regardless of sampling "
        "(profanity-check: 0.15 % of benign calls, 75 % of insults reach 0.5; bench/RESULTS.md).",
    )

    judge_base_url: str | None = Field(
        default=None,
        description="OpenAI-compatible API base URL, e.g. https://api.openai.com/v1. Unset: no LLM judging.",
    )
    judge_api_key: SecretStr | None = Field(default=None, description="Bearer key for the judge endpoint.")
    judge_model: str = Field(default="gpt-4o-mini", description="Judge model name sent to the endpoint.")
    judge_provider: str = Field(default="openai", description="Provider of the judge model in the price table.")
    judge_price_table: str | None = Field(
        default=None, description="Path of a price table YAML (default: the packaged one)."
    )
    judge_input_per_mtok: float | None = Field(
        default=None, ge=0, description="USD per million input tokens of the judge; overrides the price table."
    )
    judge_output_per_mtok: float | None = Field(
        default=None, ge=0, description="USD per million output tokens of the judge; overrides the price table."
    )
    judge_rubrics_path: str | None = Field(
        default=None, description="Rubrics YAML (default: the packaged rubrics.yaml); user rubrics go here."
    )
    judge_rubrics: str = Field(default="", description="Comma-separated rubric names to run (empty: all in the file).")
    judge_json_mode: bool = Field(
        default=True, description="Send response_format=json_object (turn off for endpoints that reject it)."
    )
    judge_max_tokens: int = Field(default=300, ge=16, description="max_tokens for one judgment.")
    judge_timeout_s: float = Field(default=30.0, gt=0, description="Timeout of one judge request.")
    judge_max_retries: int = Field(
        default=6, ge=0, description="Retries of one request on 429, 5xx, timeouts, broken replies."
    )
    judge_backoff_s: float = Field(
        default=0.5, gt=0, description="First retry back-off; doubles each retry (with jitter)."
    )
    judge_backoff_max_s: float = Field(default=30.0, gt=0, description="Longest back-off between retries.")
    judge_invalid_retries: int = Field(
        default=1, ge=0, description="Re-asks after output that is not the rubric's JSON; then it is a judge error."
    )
    judge_concurrency: int = Field(default=16, ge=1, description="Judge requests in flight at once.")
    judge_rpm: int | None = Field(default=None, ge=1, description="Requests per minute limit (unset: none).")
    judge_tpm: int | None = Field(default=None, ge=1, description="Tokens per minute limit (unset: none).")
    judge_cache_size: int = Field(
        default=10_000, ge=0, description="Judgments kept in the in-memory LRU cache (0: off)."
    )
    judge_daily_budget_usd: float | None = Field(
        default=None, ge=0, description="Judge spend per UTC day; when reached, LLM judging pauses until the next day."
    )
    judge_sample_rate: float = Field(default=1.0, ge=0, le=1, description="Share of calls the LLM judge rates.")
    judge_sample_rates: AppMap[Rate] = Field(
        default=AppMap(), description="Per-app sample rates, e.g. 'app1=0.1,app2=1'."
    )
    judge_sampling_secret: SecretStr | None = Field(
        default=None,
        description="Secret (16+ chars, the same on every judge replica) keying which calls are sampled "
        "(HMAC of the event id), so clients cannot pick always-judged ids. Required when a sample rate is "
        "between 0 and 1; `lookout up` generates one under its data dir.",
    )
    judge_field_max_tokens: int = Field(
        default=2000, ge=16,
        description="Token budget of each call field in a judge prompt (conversation, retrieved context, "
        "reference, response); longer ones are cut and the prompt says so.",
    )
    judge_tokenizer: Literal["o200k_base", "cl100k_base", "bytes"] = Field(
        default="o200k_base",
        description="How the budget counts tokens: an OpenAI encoding (exact for OpenAI models, offline), or "
        "bytes (a bound that holds for any byte-level BPE model).",
    )
    judge_rated_down: bool = Field(
        default=True,
        description="Judge every call an end user rated down (llm.feedback), whatever the sample rate, once.",
    )
    judge_feedback_group: str = Field(
        default="lookout-judge-feedback", description="Consumer group of the judge on llm.feedback (thumbs down)."
    )
    judge_recent_calls: int = Field(
        default=10_000, ge=0,
        description="Calls kept from llm.events for judging thumbs-down without a store read (older: one "
        "batched ClickHouse read).",
    )
    judge_recent_chars: int = Field(
        default=50_000_000, ge=0, description="Most characters of text those kept calls may hold together."
    )
    judge_agreement_interval_s: int = Field(
        default=300, ge=0,
        description="How often the judge stores its agreement with reviewers (judge_agreement: kappa with base "
        "rates, Spearman per app, rubric version and judge model); 0: never. Needs the evaluator LLM.",
    )
    judge_agreement_window_days: int = Field(
        default=7, ge=1, le=365, description="The rolling window of reviews each stored agreement row covers."
    )
    review_signing_secret: SecretStr | None = Field(
        default=None,
        description="Secret (16+ chars) that signs reviewer feedback; datasets, and the judge's agreement with "
        "reviewers, take only reviews whose signature verifies. Required by feedback and the retrain trigger (the "
        "same on each); the judge without it counts every reviewer rating.",
    )

    def rubric_names(self) -> list[str]:
        return [n.strip() for n in self.judge_rubrics.split(",") if n.strip()]
