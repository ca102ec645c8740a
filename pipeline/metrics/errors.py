"""The one error type of the metrics package."""
from __future__ import annotations


class MetricInputError(ValueError):
    """Scores, labels or options given to a metric are unusable; the message names which and why."""
