"""User metrics (`user_metrics`)."""

from .user_metrics import Counter, Gauge, Histogram, Summary

__all__ = ["Counter", "Gauge", "Histogram", "Summary"]
