"""Activity the platform cannot see in requests, and the lambda's own monitoring points.

Monitoring points (`CustomMonitoringPoint`, sent with `request.sendToMonitoring(point)`, and the
tags and fields a lambda adds to its request's point with `request.dataForMonitoring` or
`LambdaUserHandler.addDataForMonitoring`): the original writes them to LUNA's monitoring
database (InfluxDB), which this platform does not have. Here each point is one line of the
lambda's log, `monitoring point {"series", "time", "tags", "fields"}` (JSON), and
`lambda_monitoring_points_total{series}` on `/metrics` and `/lambda_metrics` counts them.

`monitorLastActivity` marks "this lambda did something now". Call it (`monitorLastActivity()`), or
put it on a function or coroutine function as a decorator, and every call marks activity. The
last mark is reported by `GET /healthcheck` as `last_activity` (unix seconds, or null), so the
platform's idle sweep does not take a lambda that works in the background for an idle one. With
several workers the mark is shared through the mtime of one file in the workers' common folder.
"""

import functools
import inspect
import os
import time
from typing import Any, Iterable, Optional, Union

import orjson

from .logger import logger
from .metrics import METRICS_DIR_ENV, Counter

_last = None
_touched = 0.0
_TOUCH_EVERY = 1.0  # seconds: at most one file touch per second on a busy path


def _activity_file():
    folder = os.environ.get(METRICS_DIR_ENV)
    return os.path.join(folder, "activity") if folder else None


def mark_activity():
    """Records activity now."""
    global _last, _touched
    now = time.time()
    _last = now
    path = _activity_file()
    if path is not None and now - _touched >= _TOUCH_EVERY:
        _touched = now
        try:
            with open(path, "a"):
                pass
            os.utime(path, (now, now))
        except OSError:
            pass


def last_activity():
    """The last recorded activity of this lambda (any worker), unix seconds, or None."""
    best = _last
    path = _activity_file()
    if path is not None:
        try:
            mtime = os.stat(path).st_mtime
            best = mtime if best is None else max(best, mtime)
        except OSError:
            pass
    return best


def monitorLastActivity(func=None):
    """Marks activity now (`monitorLastActivity()`), or, as a decorator, on every call of `func`."""
    if func is None:
        mark_activity()
        return None
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(*args, **kwargs):
            mark_activity()
            return await func(*args, **kwargs)

        return async_wrapper

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        mark_activity()
        return func(*args, **kwargs)

    return wrapper


# ---------------------------------------------------------------------------------------------
# Monitoring points.

#: Points written, by series (registered by the server with its own metrics).
POINTS = Counter("lambda_monitoring_points", "Monitoring points written to the log, by series.", ("series",))

_VALUE_TYPES = (str, int, float)


class MonitoringError(ValueError):
    """A monitoring point is malformed (no series, a tag or field that is not str/int/float)."""


def _checked(what, values):
    out = dict(values or {})
    for key, value in out.items():
        if not isinstance(key, str) or isinstance(value, bool) or not isinstance(value, _VALUE_TYPES):
            raise MonitoringError(
                f"monitoring {what} {key!r}={value!r}: names are strings and values strings, integers or floats"
            )
    return out


class CustomMonitoringPoint:
    """A point of a series of the lambda's own: subclass it, set `series`, and send instances
    with `request.sendToMonitoring(point)`.

        class Detections(CustomMonitoringPoint):
            series = "detections"

        request.sendToMonitoring(Detections({"camera": "gate"}, {"faces": 3}))
    """

    #: The series' name; each subclass sets it.
    series: str = ""

    def __init__(self, pointTags: dict[str, Any], pointFields: dict[str, Any], eventTime: Optional[float] = None):
        if not isinstance(self.series, str) or not self.series:
            raise MonitoringError(f"{type(self).__name__} must set `series` (a non-empty string) to be sent")
        self.pointTags = _checked("tag", pointTags)
        self.pointFields = _checked("field", pointFields)
        self.eventTime = time.time() if eventTime is None else float(eventTime)
        self.service: Optional[str] = None

    def initialize(self, serviceName: str) -> None:
        """Names the service the point comes from (`lambda-<lambda id>`; the runtime does this
        when it sends the point)."""
        self.service = serviceName

    @property
    def tags(self) -> dict[str, Any]:
        """The point's tags, `service` included once initialized."""
        return {"service": self.service, **self.pointTags} if self.service else dict(self.pointTags)

    @property
    def fields(self) -> dict[str, Any]:
        return dict(self.pointFields)


class DataForMonitoring:
    """Tags and fields a lambda adds to the point of its request (`request.dataForMonitoring`).
    When any were added, the request's point (`requests` series) is written when it is answered."""

    __slots__ = ("tags", "fields")

    def __init__(self) -> None:
        self.tags: dict[str, Any] = {}
        self.fields: dict[str, Any] = {}

    def add(self, tags: Optional[dict[str, Any]] = None, fields: Optional[dict[str, Any]] = None) -> None:
        self.tags.update(_checked("tag", tags))
        self.fields.update(_checked("field", fields))

    def __bool__(self) -> bool:
        return bool(self.tags or self.fields)


def service_name(lambda_id):
    return f"lambda-{lambda_id or 'local'}"


def write_point(series, event_time, tags, fields):
    """One point: one log line, counted by series."""
    line = orjson.dumps({"series": series, "time": event_time, "tags": tags, "fields": fields}).decode()
    logger.info("monitoring point %s", line)
    POINTS.inc(labels={"series": series})


def send_points(points: Union[CustomMonitoringPoint, Iterable[CustomMonitoringPoint]], lambda_id: str) -> None:
    """Writes `points` (one or several), naming this lambda as their service."""
    batch = [points] if isinstance(points, CustomMonitoringPoint) else list(points)
    for point in batch:
        if not isinstance(point, CustomMonitoringPoint):
            raise MonitoringError(f"sendToMonitoring takes CustomMonitoringPoint objects, not {type(point).__name__}")
    for point in batch:
        if point.service is None:
            point.initialize(service_name(lambda_id))
        write_point(point.series, point.eventTime, point.tags, point.fields)


def write_request_point(data, lambda_id, route, status, request_id, started, seconds):
    """The `requests` point of a request whose lambda added tags or fields to it."""
    tags = {"service": service_name(lambda_id), "route": route, "status_code": status, **data.tags}
    fields = {"request_id": request_id, "execution_time": round(seconds, 6), **data.fields}
    write_point("requests", started, tags, fields)
