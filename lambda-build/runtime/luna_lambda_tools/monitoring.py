"""Activity the platform cannot see in requests: background work of a lambda.

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

from .metrics import METRICS_DIR_ENV

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
