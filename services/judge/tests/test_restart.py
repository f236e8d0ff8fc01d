"""A judge process killed mid-stream (SIGKILL, no goodbye) and started again scores every
call, and storage holds each score once: replays carry the same score ids."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from calls import call
from kafka_io import ScoreReader, produce_calls

from lookout.core.events import Score
from lookout.judge.service import JudgeService
from lookout.judge.settings import JudgeSettings
from lookout.testing.brokers import free_port
from lookout.testing.marks import on_kafka_only

N_CALLS = 24
PER_CALL = 2 + 3  # toxicity.profanity of prompt and response + 3 rubrics


def start_judge(settings, openai, log: Path) -> subprocess.Popen:
    env = dict(os.environ)
    env.update({
        # Its own chdb (a path is one process's): the judge stores its agreement rows there.
        "LOOKOUT_CLICKHOUSE_DSN": f"chdb://{log.parent / 'judge-chdb'}",
        "LOOKOUT_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "LOOKOUT_KAFKA_IDEMPOTENCE": settings.kafka_idempotence,
        "LOOKOUT_TOPIC_PREFIX": settings.topic_prefix,
        "LOOKOUT_KAFKA_TOPIC_PARTITIONS": str(settings.kafka_topic_partitions),
        "LOOKOUT_HTTP_HOST": "127.0.0.1",
        "LOOKOUT_HTTP_PORT": str(free_port()),
        "LOOKOUT_JUDGE_BASE_URL": openai.base_url,
        "LOOKOUT_JUDGE_MODEL": "judge-model",
        "LOOKOUT_JUDGE_INPUT_PER_MTOK": "1",
        "LOOKOUT_JUDGE_OUTPUT_PER_MTOK": "1",
        "LOOKOUT_JUDGE_BATCH_MAX": "4",
        "LOOKOUT_JUDGE_BATCH_MS": "0",
        "LOOKOUT_TOXICITY_BACKEND": "profanity",
        "HF_HUB_OFFLINE": "1",
    })
    return subprocess.Popen([sys.executable, "-m", "lookout.judge"], env=env, stdout=log.open("ab"),
                            stderr=subprocess.STDOUT)


def score_rows(scores: list[Score]) -> list[list]:
    return [[s.score_id, s.event_id, s.ts, s.app_id, s.model, s.name, s.value, s.label or "", s.source, s.evaluator,
             s.evaluator_version, s.explanation or "", s.cost_usd] for s in scores]


COLUMNS = ["score_id", "event_id", "ts", "app_id", "model", "name", "value", "label", "source", "evaluator",
           "evaluator_version", "explanation", "cost_usd"]


@on_kafka_only
async def test_judge_killed_mid_stream_and_restarted_scores_each_call_once(broker, settings, openai, ch, tmp_path):
    openai.latency_s = 0.3  # batches take a while: the kill lands mid-stream
    calls = [call(output=f"Answer number {i}.") for i in range(N_CALLS)]
    await produce_calls(settings, calls)
    log = tmp_path / "judge.log"

    async with ScoreReader(settings) as reader:
        first = start_judge(settings, openai, log)
        try:
            await reader.until(lambda r: len(r.records) >= 3 * PER_CALL, within=120)
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        scored_before = len(reader.by_event())
        assert scored_before < N_CALLS, "the first judge finished everything before it was killed"

        second = start_judge(settings, openai, log)
        try:
            await reader.until(lambda r: sum(len(v) for v in r.by_event().values()) >= N_CALLS * PER_CALL, within=180)
            await reader.settle(1.0)
        finally:
            second.send_signal(signal.SIGTERM)
            try:
                second.wait(30)
            except subprocess.TimeoutExpired:
                second.kill()
    assert second.returncode == 0, log.read_text()[-3000:]

    # Every call got every score, and a score recomputed after the crash kept its id.
    ids = defaultdict(set)
    for s in reader.scores:
        ids[(s.event_id, s.name)].add(s.score_id)
    assert len(ids) == N_CALLS * PER_CALL
    assert all(len(v) == 1 for v in ids.values())
    assert {e for e, _ in ids} == {c.event_id for c in calls}

    # A full replay (a judge in a new consumer group re-reads llm.events from the start)
    # produces every score again, byte for byte the same id.
    replay = JudgeService(JudgeSettings(**settings.model_dump(), judge_group="replay", judge_base_url=openai.base_url,
                                        judge_model="judge-model", toxicity_backend="profanity",
                                        judge_input_per_mtok=1, judge_output_per_mtok=1))
    async with ScoreReader(settings) as again:
        await replay.start()
        try:
            await again.until(lambda r: len(r.records) >= len(reader.records) + N_CALLS * PER_CALL, within=120)
        finally:
            await replay.stop()
    assert {s.score_id for s in again.scores} == {s.score_id for s in reader.scores}

    # Storage: every record read from llm.scores, the replays included, inserted as it came
    # (one insert per run, as a sink would); each score is stored once.
    assert len(again.records) >= 2 * N_CALLS * PER_CALL
    first_run = again.records[: len(reader.records)]
    ch.insert("scores", score_rows([s for _, s in first_run]), column_names=COLUMNS)
    ch.insert("scores", score_rows([s for _, s in again.records[len(first_run):]]), column_names=COLUMNS)
    stored = ch.query("SELECT count(), uniqExact(score_id) FROM scores FINAL").result_rows[0]
    assert stored == (N_CALLS * PER_CALL, N_CALLS * PER_CALL)
