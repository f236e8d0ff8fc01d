"""How long the sink waits to fill a batch: short while it keeps up, long while it lags."""

from lookout.sink.service import LAGGING_LINGER_MS, linger_ms
from lookout.sink.settings import SinkSettings


def test_a_sink_keeping_up_lingers_only_sink_batch_ms():
    settings = SinkSettings().model_copy(update={"sink_batch_rows": 5000, "sink_batch_ms": 200})
    assert linger_ms(0, settings) == 200
    assert linger_ms(4999, settings) == 200


def test_a_sink_with_a_full_batch_or_more_on_the_topic_waits_to_fill_it():
    settings = SinkSettings().model_copy(update={"sink_batch_rows": 5000, "sink_batch_ms": 200})
    assert linger_ms(5000, settings) == LAGGING_LINGER_MS
    assert linger_ms(10**7, settings) == LAGGING_LINGER_MS


def test_a_linger_set_longer_than_the_lagging_one_is_kept_when_lagging():
    settings = SinkSettings().model_copy(update={"sink_batch_rows": 100, "sink_batch_ms": 5000})
    assert linger_ms(1000, settings) == 5000
