"""Marks the suite shares."""

from __future__ import annotations

import pytest

# For a test of a service restarting apart from its broker, or of behaviour in front of the
# broker (an SDK against ingest going down, an API's checks): the `broker` fixture gives Apache
# Kafka only. A service restarts alone only where its broker is Kafka (compose, Helm); Tansu
# serves `lookout up` without Java, where every service shares one process and the broker's
# lifetime. What Tansu must do as Kafka does (consume, commit, resume after a restart,
# rebalance, dead-letter) core/tests check on both brokers.
on_kafka_only = pytest.mark.parametrize("broker", ["kafka"], indirect=True)
