"""The retrain side of `lookout up --demo`: the packaged demo policy scaled to the demo's
speed, and the settings that point the retrain trigger at it, at a tiny base model under
the data dir, and at the local launcher.

Only durations scale: the demo posts a fixed number of calls per wall second whatever the
speed, so votes arrive at the same rate and min_samples stays as written; a window is never
made shorter than MIN_WINDOW_S, or it would hold too few votes to ever reach min_samples.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from lookout.retrain_trigger import policies

MIN_WINDOW_S = 10.0
POLICY_FILE = "demo-policies.yaml"
BASE_MODEL_DIR = "demo-base-model"


def _scaled(value: Any, speed: float) -> float:
    return round(max(policies.parse_duration(value) / speed, MIN_WINDOW_S), 3)


def scale(doc: dict, speed: float) -> dict:
    """The policy document with every window and cooldown divided by `speed`."""
    out = {**doc, "policies": []}
    for policy in doc.get("policies", []):
        p = dict(policy)
        if "cooldown" in p:
            p["cooldown"] = _scaled(p["cooldown"], speed)
        p["rules"] = [{**r, "window": _scaled(r["window"], speed)} if "window" in r else r
                      for r in p.get("rules", [])]
        out["policies"].append(p)
    return out


def write_policies(data_dir: Path, speed: float) -> Path:
    """<data_dir>/demo-policies.yaml for this speed, checked the way the trigger will load it."""
    text = resources.files("lookout.stack").joinpath("demo_policies.yaml").read_text()
    scaled = yaml.safe_dump(scale(yaml.safe_load(text), speed), sort_keys=False)
    header = f"# Written by `lookout up --demo --speed {speed:g}` from the packaged demo_policies.yaml.\n"
    path = data_dir / POLICY_FILE
    policies.parse(header + scaled, str(path))  # a bad scaling stops the start here, with the line
    path.write_text(header + scaled)
    return path


def retrain_settings(data_dir: Path, speed: float) -> dict[str, Any]:
    """RetrainSettings values of the demo (over the stack's own dataset and run folders)."""
    return {
        "retrain_policies": str(write_policies(data_dir, speed)),
        "retrain_launcher": "local",
        "retrain_base_model": str((data_dir / BASE_MODEL_DIR).resolve()),
        # Runs of a few seconds: a silent one is stuck, not busy.
        "retrain_run_timeout_s": 300.0,
        "retrain_watchdog_s": 1.0,
    }
