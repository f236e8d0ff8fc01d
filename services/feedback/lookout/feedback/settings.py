"""Settings of the feedback service (thumbs API, review queue and UI, dataset export)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from lookout.core.app_map import AppMap
from lookout.core.pii import Mode
from lookout.core.settings import CommonSettings, ServerSettings

Rate = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


class FeedbackSettings(CommonSettings, ServerSettings):
    feedback_token_secret: str = Field(
        "",
        description="Secret (16+ chars) that signs per-call feedback tokens. Required for /v1/feedback/token; "
        "every feedback instance needs the same one.",
    )
    feedback_token_ttl_s: int = Field(86_400, ge=1, description="How long a minted feedback token stays valid.")
    # Rate limits: token buckets held in memory, per instance (N instances allow N times the rate).
    feedback_token_rate_per_min: float = Field(
        10.0, gt=0, description="Votes one feedback token may post per minute (per instance); beyond it 429.")
    feedback_token_burst: int = Field(5, ge=1, description="Votes one feedback token may post at once.")
    feedback_key_rate_per_s: float = Field(
        200.0, gt=0, description="/v1/feedback and /v1/feedback/token requests per second per API key "
        "(per instance); beyond it 429.")
    feedback_key_burst: int = Field(400, ge=1, description="Requests one API key may make at once.")
    pii_mode: Mode = Field("mask", description="PII redaction: off, mask or hash.")
    pii_app_modes: AppMap[Mode] = Field(AppMap(), description="Per-app PII modes, e.g. 'app1=off,app2=hash'.")
    pii_secret: str = Field(
        "",
        description="Secret (16+ chars) for PII hash tokens and user/session id pseudonyms. Required; "
        "`lookout up` generates one under its data dir.",
    )
    review_signing_secret: str = Field(
        "", description="Secret (16+ chars) that signs reviewer feedback; datasets take only reviews whose "
        "signature verifies. Required; the same on the feedback service and the retrain trigger.")
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
    review_judge_unsure_margin: float = Field(
        0.125, ge=0, le=0.5,
        description="judge.* scores closer than this to the middle of their rubric's scale (0.5) are the judge "
        "unsure (0.125: the 3 of 1..5; 0: never); a judgment beyond it that an end user's thumbs contradict is "
        "queued as judge_vs_thumbs.",
    )
    review_judge_unsure_rate: float = Field(
        0.2, ge=0, le=1, description="Share of the calls the judge is unsure about queued as judge_unsure."
    )
    review_judge_recent_calls: int = Field(
        100_000, ge=0,
        description="Calls whose judge scores and thumbs the task builder keeps to pair them (judge_vs_thumbs) "
        "without a store read.",
    )
    review_audit_rate: float = Field(
        0.01, ge=0, le=1, description="Share of all calls queued as a random audit (per app)."
    )
    review_audit_app_rates: AppMap[Rate] = Field(AppMap(), description="Per-app audit rates, e.g. 'app1=0.1,app2=0'.")
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
    cookie_secure: bool = Field(
        False, description="Always mark the session cookie Secure. Without it the cookie is Secure whenever the "
        "login came over https: directly, or through a trusted proxy's X-Forwarded-Proto.")
    review_trusted_proxies: str = Field(
        "", description="Reverse proxies (IPs or CIDRs, comma separated) whose X-Forwarded-For and "
        "X-Forwarded-Proto the review login believes; from anyone else those headers are ignored.")
    review_login_max_failures: int = Field(
        5, ge=1, description="Failed logins to one account within the login window that lock it (per instance).")
    review_login_address_max_failures: int = Field(
        20, ge=1, description="Failed logins from one client address within the login window that block it.")
    review_login_window_s: int = Field(900, ge=1, description="The window failed logins are counted in.")
    review_login_lockout_s: int = Field(
        900, ge=1, description="How long a locked account or blocked address gets 429 (a right password too).")
    dataset_dir: str = Field(".lookout/datasets", description="Where exported datasets are written.")

    def labels(self) -> list[str]:
        return [label.strip() for label in self.review_labels.split(",") if label.strip()]
