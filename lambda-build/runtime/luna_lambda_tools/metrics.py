"""Prometheus text metrics of one lambda process: request count and latency histogram by route,
method and status. Kept minimal on purpose: it runs on every request."""

from bisect import bisect_left

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    __slots__ = ("_series",)

    def __init__(self):
        # (route, method, status) -> [count, sum, per-bucket counts (+Inf last)]
        self._series = {}

    def observe(self, route, method, status, seconds):
        key = (route, method, status)
        s = self._series.get(key)
        if s is None:
            s = self._series[key] = [0, 0.0, [0] * (len(BUCKETS) + 1)]
        s[0] += 1
        s[1] += seconds
        s[2][bisect_left(BUCKETS, seconds)] += 1

    def render(self):
        out = [
            "# HELP lambda_requests_total Requests served by this lambda process.",
            "# TYPE lambda_requests_total counter",
        ]
        items = sorted(self._series.items())
        for (route, method, status), (count, _, _) in items:
            out.append(f'lambda_requests_total{{route="{route}",method="{method}",status="{status}"}} {count}')
        out.append("# HELP lambda_request_duration_seconds Time to answer a request.")
        out.append("# TYPE lambda_request_duration_seconds histogram")
        for (route, method, status), (count, total, buckets) in items:
            labels = f'route="{route}",method="{method}",status="{status}"'
            cumulative = 0
            for le, n in zip(BUCKETS, buckets):
                cumulative += n
                out.append(f'lambda_request_duration_seconds_bucket{{{labels},le="{le}"}} {cumulative}')
            out.append(f'lambda_request_duration_seconds_bucket{{{labels},le="+Inf"}} {count}')
            out.append(f"lambda_request_duration_seconds_sum{{{labels}}} {total:.6f}")
            out.append(f"lambda_request_duration_seconds_count{{{labels}}} {count}")
        return "\n".join(out) + "\n"
