"""PII is redacted before anything is stored: check the row in ClickHouse (and so what
went through Kafka) for each detector and each mode."""

from __future__ import annotations

import pytest

from lookout.testing.stack import IngestStack, ingest_settings_for
from tests.events import llm_call
from tests.test_pipeline import post_in_batches

SAMPLES = {
    "email": ("write to jane.doe@example.com today", "jane.doe@example.com", "[EMAIL"),
    "phone": ("call me at +44 20 7946 0958 please", "7946 0958", "[PHONE"),
    "card": ("my card is 4111 1111 1111 1111", "4111 1111 1111 1111", "[CARD"),
    "iban": ("pay to DE89 3704 0044 0532 0130 00 now", "DE89 3704 0044 0532 0130 00", "[IBAN"),
    "ipv4": ("the server 192.168.10.24 is down", "192.168.10.24", "[IP"),
    "ipv6": ("ping 2001:db8::8a2e:370:7334", "2001:db8::8a2e:370:7334", "[IP"),
}


@pytest.fixture(scope="module")
def stack(tansu_broker, chdb_path):
    from lookout.core.settings import CommonSettings

    common = CommonSettings(
        kafka_bootstrap=tansu_broker.bootstrap, kafka_idempotence="off", topic_prefix="pii.",
        clickhouse_dsn=f"chdb://{chdb_path}", clickhouse_database="pii", kafka_topic_partitions=1,
    )
    settings = ingest_settings_for(common).model_copy(
        update={"pii_mode": "mask", "pii_app_modes": "hashed-app=hash,raw-app=off",
                "pii_secret": "pii-test-secret-0123456789"}
    )
    s = IngestStack(settings).start()
    yield s
    s.close()


def stored(stack, event_id: str) -> tuple:
    stack.wait_for("SELECT count() FROM llm_calls WHERE event_id = {id:UUID}", 1, id=event_id)
    return stack.client.query(
        "SELECT prompt, output, input, context, metadata['note'], pii_redactions FROM llm_calls "
        "WHERE event_id = {id:UUID}", parameters={"id": event_id}
    ).result_rows[0]


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_each_detector_masks_its_value_in_every_text_field(stack, kind):
    text, secret, marker = SAMPLES[kind]
    event = llm_call("masked-app", prompt=text, output=text, context=[text], metadata={"note": text},
                     input=[{"role": "user", "content": text}])
    post_in_batches(stack, [event])
    prompt, output, input_json, context, note, count = stored(stack, event["event_id"])
    for value in (prompt, output, input_json, context[0], note):
        assert secret not in value and marker in value
    assert count == 5


def test_hash_mode_keeps_a_stable_token_and_off_keeps_the_text(stack):
    text, secret, _ = SAMPLES["email"]
    a = llm_call("hashed-app", prompt=text)
    b = llm_call("hashed-app", prompt=text)
    raw = llm_call("raw-app", prompt=text)
    post_in_batches(stack, [a, b, raw])
    prompt_a, prompt_b = stored(stack, a["event_id"])[0], stored(stack, b["event_id"])[0]
    assert secret not in prompt_a and prompt_a == prompt_b and "[EMAIL:" in prompt_a
    assert stored(stack, raw["event_id"])[0] == text


def test_numbers_that_are_not_pii_are_left_alone(stack):
    text = "order 1234567890123 on 2026-11-26 used 4111 1111 1111 1112 tokens=1532 at 10:42:07"
    event = llm_call("masked-app", prompt=text)
    post_in_batches(stack, [event])
    assert stored(stack, event["event_id"])[0] == text
