"""User metrics, exposed with the runtime's own on `GET /metrics` and `GET /lambda_metrics`.

Build them at module scope of `lambda_main.py` and list them in `USER_METRICS`:

    from luna_lambda_tools.public.metrics.user_metrics import Counter, Histogram

    processed = Counter("images_processed", "Images processed.", labelNames=["kind"])
    latency = Histogram("detect_seconds", "Detection time.")
    USER_METRICS = [processed, latency]

    async def main(request):
        processed.inc(labels={"kind": "face"})
        latency.observe(0.012)
        ...

`monitorLastActivity` is here too, where the original documents it (and in `public.monitoring`).
"""

from ...metrics import DEFAULT_BUCKETS, Counter, Gauge, Histogram, MetricError, Summary
from ...monitoring import monitorLastActivity

__all__ = ["DEFAULT_BUCKETS", "Counter", "Gauge", "Histogram", "MetricError", "Summary", "monitorLastActivity"]
