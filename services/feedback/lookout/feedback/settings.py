"""Settings of the feedback service (thumbs API, review queue and UI, dataset export)."""

from __future__ import annotations

from pydantic import Field

from lookout.core.settings import CommonSettings


class FeedbackSettings(CommonSettings):
    http_host: str = Field("0.0.0.0", description="Address the feedback API and review UI listen on.")
    http_port: int = Field(8080, ge=1, le=65535, description="Port the feedback API and review UI listen on.")
    feedback_token_secret: str = Field(
        "",
        description="Secret (16+ chars) that signs per-call feedback tokens. Required for /v1/feedback/token; "
        "every feedback instance needs the same one.",
    )
    feedback_token_ttl_s: int = Field(86_400, ge=1, description="How long a minted feedback token stays valid.")
    produce_timeout_s: float = Field(10.0, gt=0, description="How long a request waits for Kafka acks before 503.")
    review_lease_s: int = Field(600, ge=1, description="How long a claimed review task stays with its reviewer.")
    # Calibrated in bench/bench_toxicity.py on real text (profanity-check, the default model):
    # the lowest threshold that queued no benign call of the dev split (0 of 11 985 calls of
    # Debian descriptions and synopses; held out: 1 of 12 006); 58 % of held-out insults
    # exceed it. At 0.5, 0.19 % of benign calls would queue.
    review_toxicity_threshold: float = Field(
        0.9, description="toxicity.* scores above this queue the call (benign calls over 0.9: 0 of 11 985; "
        "bench/RESULTS.md).")
    review_judge_threshold: float = Field(0.5, description="judge.* scores below this queue the call.")
    review_audit_rate: float = Field(
        0.01, ge=0, le=1, description="Share of all calls queued as a random audit (per app)."
    )
    review_audit_app_rates: str = Field("", description="Per-app audit rates, e.g. 'app1=0.1,app2=0'.")
    review_overlap: float = Field(
        0.0, ge=0, le=1, description="Share of tasks reviewed by two reviewers (inter-annotator agreement)."
    )
    review_age_weight: float = Field(0.1, ge=0, description="Priority added per hour a task waits.")
    review_labels: str = Field(
        "correct,hallucination,off_topic,unsafe,incomplete,formatting",
        description="Labels reviewers can pick, comma separated.",
    )
    review_signals_group: str = Field("lookout-feedback-signals", description="Consumer group of the task builder.")
    review_claims_topic: str = Field(
        "llm.review.claims", description="Claim log topic (one partition; the prefix applies)."
    )
    review_admin_user: str = Field("", description="Admin account created at start when missing (with the password).")
    review_admin_password: str = Field("", description="Password of that admin account.")
    session_ttl_s: int = Field(12 * 3600, ge=60, description="Reviewer session lifetime.")
    cookie_secure: bool = Field(False, description="Mark the session cookie Secure (serve the UI over https).")
    dataset_dir: str = Field(".lookout/datasets", description="Where exported datasets are written.")

    def labels(self) -> list[str]:
        return [label.strip() for label in self.review_labels.split(",") if label.strip()]

    def audit_rate(self, app_id: str) -> float:
        for item in self.review_audit_app_rates.split(","):
            name, _, rate = item.partition("=")
            if name.strip() == app_id and rate.strip():
                return float(rate)
        return self.review_audit_rate
