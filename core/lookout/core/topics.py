"""Kafka topic names. Kafka is the only way services talk to each other."""

EVENTS = "llm.events"
SCORES = "llm.scores"
DRIFT = "llm.drift"
FEEDBACK = "llm.feedback"
RETRAIN = "llm.retrain"
RETRAIN_STATUS = "llm.retrain.status"
DLQ = "llm.dlq"
# Agent, tool, retrieval, embedding (and LLM) spans of OTLP traces, for the trace view.
SPANS = "llm.spans"

ALL = (EVENTS, SCORES, DRIFT, FEEDBACK, RETRAIN, RETRAIN_STATUS, DLQ, SPANS)


def resolve(prefix: str, base: str) -> str:
    """The topic's name on the broker: LOOKOUT_TOPIC_PREFIX + base name."""
    return f"{prefix}{base}"


def base_name(prefix: str, topic: str) -> str:
    """Inverse of resolve: the base name of a topic read from the broker."""
    return topic[len(prefix):] if prefix and topic.startswith(prefix) else topic


def event_key(app_id: str, model: str) -> bytes:
    """Key for llm.events: one (app, model) stream lives in one partition, so drift
    windows are partition-local."""
    return f"{app_id}/{model}".encode()


def span_key(app_id: str, trace_id: str) -> bytes:
    """Key for llm.spans: a trace's spans share a partition, in order."""
    return f"{app_id}/{trace_id}".encode()
