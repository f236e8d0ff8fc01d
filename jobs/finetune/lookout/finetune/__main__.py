"""`python -m lookout.finetune --dataset DIR --base-model PATH --output DIR --run-id ... `

Exit status 0 after `succeeded`, 1 after `failed` (the error is in the status message).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
import uuid
from pathlib import Path

from lookout.core.settings import CommonSettings

from .data import dataset_texts
from .status import RunInfo, StatusReporter
from .tiny import ensure_model
from .train import TrainConfig, train


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m lookout.finetune", description=__doc__)
    p.add_argument("--dataset", required=True, help="snapshot folder (with sft.jsonl) or an SFT JSONL file")
    p.add_argument("--base-model", required=True, help="base model path (or hub id where the network allows)")
    p.add_argument("--output", required=True)
    p.add_argument("--run-id", default="")
    p.add_argument("--app-id", default="unknown")
    p.add_argument("--model", default="unknown")
    p.add_argument("--rule", default="")
    p.add_argument("--dataset-hash", default="")
    p.add_argument("--model-version", default="")
    p.add_argument("--bootstrap", default="", help="Kafka bootstrap for status events (else LOOKOUT_* env, "
                                                   "else JSON lines on stdout)")
    p.add_argument("--method", choices=["lora", "full"], default="lora")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-steps", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--learning-rate", type=float, default=2e-4)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--held-out", type=float, default=0.1)
    p.add_argument("--lora-r", type=int, default=8)
    p.add_argument("--lora-alpha", type=int, default=16)
    p.add_argument("--lora-target-modules", default="", help="comma separated; empty: peft's default")
    p.add_argument("--dpo-epochs", type=int, default=0, help="DPO epochs on preference.jsonl after SFT (0: none)")
    p.add_argument("--dpo-beta", type=float, default=0.1)
    p.add_argument("--dpo-learning-rate", type=float, default=5e-5)
    p.add_argument("--tiny-base-if-missing", action="store_true",
                   help="build a tiny random GPT-2 and a tokenizer trained on the dataset's text at --base-model "
                        "when nothing is there yet (the embedded demo: no hub, CPU only)")
    p.add_argument("--device", default="")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    run_id = uuid.UUID(a.run_id) if a.run_id else uuid.uuid4()
    model_version = a.model_version or f"{a.model}+lora-{str(run_id)[:8]}"
    settings = None
    if a.bootstrap:
        settings = CommonSettings(kafka_bootstrap=a.bootstrap)
    elif os.environ.get("LOOKOUT_KAFKA_BOOTSTRAP"):
        settings = CommonSettings()
    cfg = TrainConfig(
        dataset=a.dataset, base_model=a.base_model, output_dir=a.output, run_id=str(run_id), app_id=a.app_id,
        model=a.model, rule=a.rule, dataset_hash=a.dataset_hash, model_version=model_version, method=a.method,
        epochs=a.epochs, max_steps=a.max_steps, batch_size=a.batch_size, learning_rate=a.learning_rate,
        max_length=a.max_length, held_out=a.held_out, lora_r=a.lora_r, lora_alpha=a.lora_alpha,
        lora_target_modules=[m for m in a.lora_target_modules.split(",") if m], device=a.device, seed=a.seed,
        dpo_epochs=a.dpo_epochs, dpo_beta=a.dpo_beta, dpo_learning_rate=a.dpo_learning_rate,
    )
    info = RunInfo(run_id, a.app_id, a.model, a.rule, a.dataset, a.dataset_hash or None)
    with StatusReporter(info, settings) as status:
        status.report("running", f"fine-tuning {a.base_model} ({a.method})")
        try:
            if a.tiny_base_if_missing and not Path(a.base_model, "config.json").exists():
                status.report("running", f"building a tiny base model at {a.base_model}")
                ensure_model(a.base_model, dataset_texts(a.dataset))
            metrics = train(cfg, lambda msg, data: status.report("running", msg, {"progress": data}))
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            status.report("failed", f"{type(exc).__name__}: {exc}")
            return 1
        keep = ("eval_before", "eval_after", "dpo", "steps", "train_tokens", "tokens_per_second", "device", "output")
        status.report("succeeded", f"adapter at {metrics['output']}", {"metrics": {k: metrics[k] for k in keep}},
                      model_version=model_version)
    return 0


if __name__ == "__main__":
    sys.exit(main())
