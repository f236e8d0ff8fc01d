"""Two-sample drift tests. Each module computes one kind of test and knows nothing about
streams, windows or Kafka: it takes a reference and a current sample and returns an
Outcome (Evidently's split between a metric's calculation and the test on top of it)."""

from .outcome import Outcome

__all__ = ["Outcome"]
