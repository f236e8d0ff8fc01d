"""The fine-tuning job on a tiny random model on CPU: it learns (held-out loss falls),
writes the adapter, metrics.json and a model card, and reports its states."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid

import pytest
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from lookout.core import kafka, topics
from lookout.core.events import Retrain
from lookout.finetune.data import Example, encode, load_sft, split
from lookout.finetune.train import TrainConfig, train
from lookout.testing.kafka_io import read_all


def test_split_is_deterministic_and_never_empty(sft_dataset):
    ex = load_sft(sft_dataset)
    tr, ev = split(ex, 0.25)
    assert len(ev) == 6 and len(tr) == 18
    _, ev2 = split(list(reversed(ex)), 0.25)
    assert [e.event_id for e in ev] == [e.event_id for e in ev2]
    assert split(ex[:2], 0.01)[1] and split(ex[:2], 0.99)[0]
    assert split(ex[:1], 0.5) == (ex[:1], [])


def test_labels_cover_the_completion_only(tiny_model):
    tok = AutoTokenizer.from_pretrained(tiny_model)
    enc = encode(tok, Example("e", [{"role": "user", "content": "hi there"}], "hello"), 64)
    answer = tok("hello", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert [t for t in enc.labels if t != -100] == answer
    assert enc.input_ids[-len(answer):] == answer
    # Too long: the prompt is cut from the left, the answer kept.
    enc = encode(tok, Example("e", [{"role": "user", "content": "word " * 200}], "hello"), 16)
    assert len(enc.input_ids) == 16 and enc.input_ids[-len(answer):] == answer


def test_lora_training_lowers_held_out_loss_and_writes_outputs(tiny_model, sft_dataset, tmp_path):
    out = tmp_path / "run"
    cfg = TrainConfig(dataset=str(sft_dataset), base_model=str(tiny_model), output_dir=str(out), run_id="r1",
                      app_id="bot", model="m1", rule="p/thumbs", dataset_hash="abc123", model_version="m1+lora-r1",
                      epochs=30, batch_size=8, learning_rate=5e-3, held_out=0.25, device="cpu")
    seen = []
    m = train(cfg, lambda msg, data: seen.append(msg))
    assert m["eval_after"]["loss"] < m["eval_before"]["loss"]
    assert m["eval_after"]["perplexity"] < m["eval_before"]["perplexity"]
    assert 0 < m["trainable_parameters"] < m["total_parameters"]
    assert m["steps"] == 90 and seen[-1] == "step 90/90"
    assert json.loads((out / "metrics.json").read_text())["dataset_hash"] == "abc123"
    card = (out / "README.md").read_text()
    assert "abc123" in card and "p/thumbs" in card and "m1+lora-r1" in card
    # The adapter loads back on the base model.
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert isinstance(PeftModel.from_pretrained(base, out / "adapter"), PeftModel)


def _run(*args: str, **env: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", **env}  # no LOOKOUT_KAFKA_BOOTSTRAP: stdout events
    return subprocess.run([sys.executable, "-m", "lookout.finetune", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_cli_reports_running_then_succeeded_on_stdout(tiny_model, sft_dataset, tmp_path):
    run_id = str(uuid.uuid4())
    p = _run("--dataset", str(sft_dataset), "--base-model", str(tiny_model), "--output", str(tmp_path / "o"),
             "--run-id", run_id, "--app-id", "bot", "--model", "m1", "--max-steps", "3", "--device", "cpu")
    assert p.returncode == 0, p.stderr
    events = [Retrain.model_validate_json(line) for line in p.stdout.splitlines()]
    assert events[0].status == "running" and events[-1].status == "succeeded"
    assert {str(e.run_id) for e in events} == {run_id}
    assert events[-1].model_version == f"m1+lora-{run_id[:8]}"
    assert events[-1].evidence["metrics"]["steps"] == 3


def test_cli_reports_its_states_on_the_status_topic_when_given_a_bootstrap(kafka_broker, settings_for, tiny_model,
                                                                          sft_dataset, tmp_path):
    settings = settings_for(kafka_broker)
    asyncio.run(kafka.ensure_topics(settings, [topics.RETRAIN_STATUS]))
    run_id = str(uuid.uuid4())
    p = _run("--dataset", str(sft_dataset), "--base-model", str(tiny_model), "--output", str(tmp_path / "o"),
             "--run-id", run_id, "--max-steps", "2", "--device", "cpu", "--bootstrap", settings.kafka_bootstrap,
             LOOKOUT_TOPIC_PREFIX=settings.topic_prefix)
    assert p.returncode == 0, p.stderr
    assert p.stdout == ""  # the events went to Kafka instead
    records = asyncio.run(read_all(settings, topics.RETRAIN_STATUS))
    events = [Retrain.model_validate_json(r.value or b"") for r in records]  # a tombstone fails here
    assert events[0].status == "running" and events[-1].status == "succeeded"
    assert {r.key for r in records} == {run_id.encode()}  # one partition per run: its states stay in order
    assert events[-1].evidence["metrics"]["steps"] == 2


def test_cli_reports_failed_on_a_bad_dataset(tiny_model, tmp_path):
    bad = tmp_path / "sft.jsonl"
    bad.write_text('{"messages": "nope"}\n')
    p = _run("--dataset", str(bad), "--base-model", str(tiny_model), "--output", str(tmp_path / "o"))
    assert p.returncode == 1
    last = Retrain.model_validate_json(p.stdout.splitlines()[-1])
    assert last.status == "failed" and "an SFT line needs" in (last.message or "")


def test_cli_builds_a_tiny_base_model_on_first_use_and_reuses_it(sft_dataset, tmp_path):
    """The embedded demo's base model: no hub, made from the snapshot's own text by the first run."""
    base = tmp_path / "data" / "demo-base-model"
    args = ("--dataset", str(sft_dataset), "--base-model", str(base), "--tiny-base-if-missing", "--max-steps", "2",
            "--device", "cpu")
    p = _run(*args, "--output", str(tmp_path / "o1"))
    assert p.returncode == 0, p.stderr
    events = [Retrain.model_validate_json(line) for line in p.stdout.splitlines()]
    assert any("building a tiny base model" in (e.message or "") for e in events)
    assert events[-1].status == "succeeded"
    built = (base / "model.safetensors").stat().st_mtime_ns
    tok = AutoTokenizer.from_pretrained(base)
    # A tokenizer trained on the dataset: its text takes far fewer tokens than bytes.
    text = "William Shakespeare wrote Hamlet."
    assert len(tok(text, add_special_tokens=False)["input_ids"]) < len(text) / 2
    assert not [p for p in base.parent.iterdir() if p.name.startswith(".")]  # no half-built folder left

    p = _run(*args, "--output", str(tmp_path / "o2"))
    assert p.returncode == 0, p.stderr
    assert "building a tiny base model" not in p.stdout
    assert (base / "model.safetensors").stat().st_mtime_ns == built


def test_dpo_after_sft_learns_to_prefer_the_chosen_answers(tiny_model, pref_dataset, tmp_path):
    cfg = TrainConfig(dataset=str(pref_dataset), base_model=str(tiny_model), output_dir=str(tmp_path / "run"),
                      epochs=5, batch_size=8, learning_rate=5e-3, held_out=0.25, device="cpu",
                      dpo_epochs=10, dpo_beta=0.5, dpo_learning_rate=5e-3)
    m = train(cfg)
    d = m["dpo"]
    assert d["pairs_train"] == 18 and d["pairs_eval"] == 6
    # The reference is the SFT model itself: before any DPO step the loss is log 2 and no pair is won.
    assert d["loss_before"] == pytest.approx(0.6931, abs=1e-3) and d["accuracy_before"] == 0
    assert d["loss_after"] < d["loss_before"] and d["accuracy_after"] > 0.5
    assert "DPO on 18 preference pairs" in (tmp_path / "run" / "README.md").read_text()


def test_no_preference_file_no_dpo(tiny_model, sft_dataset, tmp_path):
    cfg = TrainConfig(dataset=str(sft_dataset), base_model=str(tiny_model), output_dir=str(tmp_path / "run"),
                      max_steps=1, device="cpu", dpo_epochs=3)
    assert train(cfg)["dpo"] is None
