"""How long the sink waits to fill a batch: short while it keeps up, long while it lags."""

from lookout.sink.service import LAGGING_LINGER_MS, linger_ms


def test_a_sink_keeping_up_lingers_only_sink_batch_ms():
    assert linger_ms(0, batch_rows=5000, batch_ms=200) == 200
    assert linger_ms(4999, batch_rows=5000, batch_ms=200) == 200


def test_a_sink_with_a_full_batch_or_more_on_the_topic_waits_to_fill_it():
    assert linger_ms(5000, batch_rows=5000, batch_ms=200) == LAGGING_LINGER_MS
    assert linger_ms(10**7, batch_rows=5000, batch_ms=200) == LAGGING_LINGER_MS


def test_a_linger_set_longer_than_the_lagging_one_is_kept_when_lagging():
    assert linger_ms(1000, batch_rows=100, batch_ms=5000) == 5000
