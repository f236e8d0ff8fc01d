"""Prometheus metrics of the judge (served on /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

EVENTS = Counter("lookout_judge_events_total", "LLM calls the judge consumed")
SCORES = Counter("lookout_judge_scores_total", "Scores produced to llm.scores", ["source"])
TOXICITY_TEXTS = Counter("lookout_judge_toxicity_texts_total", "Texts scored for toxicity", ["evaluator"])
JUDGED = Counter("lookout_judge_judged_total", "Evaluator-LLM judgments that became scores", ["rubric"])
CACHE_HITS = Counter("lookout_judge_cache_hits_total", "Judgments served from the cache", ["rubric"])
ERRORS = Counter("lookout_judge_errors_total", "Judge errors (no score recorded)", ["rubric", "kind"])
REQUESTS = Counter("lookout_judge_requests_total", "Requests answered by the judge endpoint")
RETRIES = Counter("lookout_judge_retries_total", "Judge requests retried", ["reason"])
TRUNCATED = Counter("lookout_judge_truncated_fields_total",
                    "Call fields cut to the judge's token budget (LOOKOUT_JUDGE_FIELD_MAX_TOKENS)", ["field"])
SKIPPED = Counter("lookout_judge_skipped_total", "Calls not sent to the evaluator LLM", ["reason"])
SPEND = Counter("lookout_judge_spend_usd_total", "USD spent on the evaluator LLM")
UNPRICED = Counter("lookout_judge_unpriced_requests_total", "Judge requests whose cost is unknown (no price)")
TOKENS = Counter("lookout_judge_tokens_total", "Tokens used by the evaluator LLM", ["direction"])
BUDGET_PAUSED = Gauge("lookout_judge_budget_paused", "1 while the daily budget is spent and judging is paused")
SPENT_TODAY = Gauge("lookout_judge_spent_today_usd", "Judge spend in the current UTC day")
RATED_DOWN = Counter("lookout_judge_rated_down_total",
                     "Thumbs-down calls on llm.feedback, by outcome (judged, sampled, already_judged, "
                     "call_not_found)", ["outcome"])
