"""Prometheus metrics of one lambda: the runtime's own request metrics and the user's metrics
(`luna_lambda_tools.public.metrics.user_metrics`), rendered together in the text format on
`GET /metrics` and `GET /lambda_metrics`.

Every sample value lives in a *cell*. With one worker process a cell is a plain Python float.
With `LAMBDA_WORKERS > 1` the supervisor hands its workers a folder (`LUNA_LAMBDA_METRICS_DIR`)
and each worker keeps its cells in a memory-mapped file of its own there; whichever worker answers
`/metrics` reads every worker's file and sums them, so the figures are those of the whole lambda,
not of one worker picked at random. Counters of a worker that died stay counted; so do its gauges.
"""

import json
import mmap
import os
import re
import struct
from bisect import bisect_left
from math import isinf

METRICS_DIR_ENV = "LUNA_LAMBDA_METRICS_DIR"

_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_RESERVED_LABELS = ("le", "quantile", "replica")

#: Default histogram buckets of user metrics (seconds): the original luna_lambda_tools' documented ones.
DEFAULT_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)
#: Buckets of the runtime's own request latency histogram.
REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class MetricError(ValueError):
    """A metric was defined or used wrongly (bad name, undeclared or missing label, ...)."""


# ---------------------------------------------------------------------------------------------
# Cells: where values live.


class _LocalCells:
    """Values of one child in this process only."""

    __slots__ = ("v",)

    def __init__(self, n):
        self.v = [0.0] * n

    def add(self, i, amount):
        self.v[i] += amount

    def set(self, i, value):
        self.v[i] = value

    def values(self):
        return self.v


class _MmapFile:
    """One worker's file of cells: `[u32 used][u32 0]` then entries
    `[u32 key_len][u32 n][key, padded to 8][n x f64]`. Entries are only appended, and `used` is
    written after the entry, so a reader never sees half an entry."""

    _HEADER = 8

    def __init__(self, path):
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self._size = 1 << 16
        os.ftruncate(self._fd, self._size)
        self.mm = mmap.mmap(self._fd, self._size)
        self._used = self._HEADER
        struct.pack_into("<II", self.mm, 0, self._used, 0)

    def allocate(self, key, n):
        raw = key.encode()
        padded = (len(raw) + 7) & ~7
        need = 8 + padded + 8 * n
        while self._used + need > self._size:
            self._size *= 2
            os.ftruncate(self._fd, self._size)
            self.mm.close()
            self.mm = mmap.mmap(self._fd, self._size)
        at = self._used
        struct.pack_into(f"<II{padded}s", self.mm, at, len(raw), n, raw)
        offset = at + 8 + padded
        self._used += need
        struct.pack_into("<I", self.mm, 0, self._used)
        return offset


class _MmapCells:
    __slots__ = ("_file", "_offset", "_n")

    def __init__(self, file, key, n):
        self._file = file
        self._offset = file.allocate(key, n)
        self._n = n

    def add(self, i, amount):
        at = self._offset + 8 * i
        mm = self._file.mm
        struct.pack_into("<d", mm, at, struct.unpack_from("<d", mm, at)[0] + amount)

    def set(self, i, value):
        struct.pack_into("<d", self._file.mm, self._offset + 8 * i, value)

    def values(self):
        return list(struct.unpack_from(f"<{self._n}d", self._file.mm, self._offset))


_mmap_file = None


def _shared_dir():
    return os.environ.get(METRICS_DIR_ENV) or None


def _cells(key, n):
    """New cells for a child keyed `key` (a JSON text), in the store this process uses."""
    global _mmap_file
    folder = _shared_dir()
    if folder is None:
        return _LocalCells(n)
    if _mmap_file is None or not _mmap_file.path.startswith(folder):
        _mmap_file = _MmapFile(os.path.join(folder, f"{os.getpid()}.db"))
    return _MmapCells(_mmap_file, key, n)


def _read_shared(folder):
    """Sums the cells of every worker file in `folder`: {key: [values]}."""
    totals = {}
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".db"):
            continue
        try:
            with open(os.path.join(folder, name), "rb") as f:
                data = f.read()
        except OSError:
            continue
        if len(data) < 8:
            continue
        used = min(struct.unpack_from("<I", data, 0)[0], len(data))
        at = 8
        while at + 8 <= used:
            key_len, n = struct.unpack_from("<II", data, at)
            padded = (key_len + 7) & ~7
            end = at + 8 + padded + 8 * n
            if end > used:
                break
            key = data[at + 8 : at + 8 + key_len].decode()
            values = struct.unpack_from(f"<{n}d", data, at + 8 + padded)
            acc = totals.get(key)
            if acc is None:
                totals[key] = list(values)
            else:
                for i, v in enumerate(values):
                    acc[i] += v
            at = end
    return totals


# ---------------------------------------------------------------------------------------------
# Metric families.


def _check_name(name, what="metric name"):
    if not isinstance(name, str) or not _NAME.match(name):
        raise MetricError(f"{what} {name!r} is not a valid Prometheus name ([a-zA-Z_:][a-zA-Z0-9_:]*)")


def _escape(value):
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _fmt(value):
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


class _Metric:
    """A metric family: a name, a description, declared label names and one child per label set."""

    _type = ""
    _width = 1  # cells per child

    def __init__(self, name, description, labelNames=None):
        _check_name(name)
        if not isinstance(description, str):
            raise MetricError(f"metric {name!r}: the description must be a string, got {type(description).__name__}")
        labels = tuple(labelNames or ())
        for label in labels:
            if not isinstance(label, str) or not _LABEL.match(label) or label.startswith("__"):
                raise MetricError(f"metric {name!r}: label name {label!r} is not a valid Prometheus label name")
            if label in _RESERVED_LABELS:
                raise MetricError(f"metric {name!r}: label name {label!r} is reserved")
        if len(set(labels)) != len(labels):
            raise MetricError(f"metric {name!r}: label names {list(labels)} repeat a name")
        self.name = name
        self.description = description
        self.labelNames = labels
        #: The lambda's id and the registry that renders this metric, set by `initialize`.
        self.lambdaId = None
        self.registry = None
        self._children = {}
        self._seen = {}  # label values as given -> cells (see _resolve)
        if not labels:
            self._child(())

    def initialize(self, lambdaId, registry):
        """Binds the metric to its lambda and registry; the runtime calls it at start for each
        metric of `USER_METRICS`."""
        self.lambdaId = lambdaId
        self.registry = registry

    def _child(self, values):
        cells = self._children.get(values)
        if cells is None:
            key = json.dumps([self.name, list(values)], separators=(",", ":"))
            cells = self._children[values] = _cells(key, self._width)
        return cells

    def _resolve(self, labels):
        """The cells for a `labels` dict, after checking it against the declared names."""
        # Fast path: the same label values as before (a dict of the declared names, hashable
        # values): one tuple and one lookup.
        if labels.__class__ is dict and len(labels) == len(self.labelNames):
            try:
                cells = self._seen.get(tuple([labels[k] for k in self.labelNames]))
            except (KeyError, TypeError):
                cells = None
            if cells is not None:
                return cells
        cells = self._resolve_checked(labels)
        if labels.__class__ is dict:
            try:
                self._seen[tuple([labels[k] for k in self.labelNames])] = cells
            except TypeError:
                pass
        return cells

    def _resolve_checked(self, labels):
        if not self.labelNames:
            if labels:
                raise MetricError(f"metric {self.name!r} declares no labels, but got {sorted(labels)}")
            return self._children[()]
        if not isinstance(labels, dict):
            raise MetricError(f"metric {self.name!r} needs labels={{...}} with {list(self.labelNames)}")
        unknown = [k for k in labels if k not in self.labelNames]
        if unknown:
            raise MetricError(
                f"metric {self.name!r}: label(s) {unknown} not declared; declared labelNames are {list(self.labelNames)}"
            )
        try:
            values = tuple(str(labels[k]) for k in self.labelNames)
        except KeyError as e:
            raise MetricError(f"metric {self.name!r}: label {e.args[0]!r} is missing; every call gives {list(self.labelNames)}") from None
        return self._child(values)

    # Rendering -----------------------------------------------------------------------------

    def _label_text(self, values, extra=""):
        parts = [f'{k}="{_escape(v)}"' for k, v in zip(self.labelNames, values)]
        if extra:
            parts.append(extra)
        return "{" + ",".join(parts) + "}" if parts else ""

    def _samples(self, values, cells):
        raise NotImplementedError

    def _exposed(self):
        return self.name

    def render(self, out, shared=None):
        exposed = self._exposed()
        out.append(f"# HELP {exposed} {self.description.replace(chr(10), ' ')}")
        out.append(f"# TYPE {exposed} {self._type}")
        if shared is None:
            items = [(values, cells.values()) for values, cells in self._children.items()]
        else:
            items = []
            for key, cells in shared.items():
                name, values = json.loads(key)
                if name == self.name:
                    items.append((tuple(values), cells))
        for values, cells in sorted(items):
            self._samples(out, values, cells)


class Counter(_Metric):
    """A count that only goes up: `inc(amount=1, labels=None)`. Exposed as `<name>_total`."""

    _type = "counter"

    def __init__(self, name, description, labelNames=None):
        super().__init__(name[:-6] if name.endswith("_total") else name, description, labelNames)

    def _exposed(self):
        return self.name + "_total"

    def inc(self, amount=1, labels=None):
        if amount < 0:
            raise MetricError(f"counter {self.name!r} can only go up; inc({amount}) is negative")
        cells = self._resolve(labels)
        if cells.__class__ is _LocalCells:
            cells.v[0] += amount
        else:
            cells.add(0, amount)

    def _samples(self, out, values, cells):
        out.append(f"{self.name}_total{self._label_text(values)} {_fmt(cells[0])}")


class Gauge(_Metric):
    """A value that goes up and down: `inc`, `dec`, `set(value, labels=None)`."""

    _type = "gauge"

    def inc(self, amount=1, labels=None):
        self._resolve(labels).add(0, amount)

    def dec(self, amount=1, labels=None):
        self._resolve(labels).add(0, -amount)

    def set(self, value, labels=None):
        self._resolve(labels).set(0, float(value))

    def _samples(self, out, values, cells):
        out.append(f"{self.name}{self._label_text(values)} {_fmt(cells[0])}")


class Summary(_Metric):
    """Observations counted and summed: `observe(amount, labels=None)` (`_count`, `_sum`)."""

    _type = "summary"
    _width = 2

    def observe(self, amount, labels=None):
        cells = self._resolve(labels)
        cells.add(0, 1)
        cells.add(1, amount)

    def _samples(self, out, values, cells):
        out.append(f"{self.name}_count{self._label_text(values)} {_fmt(cells[0])}")
        out.append(f"{self.name}_sum{self._label_text(values)} {_fmt(cells[1])}")


class Histogram(_Metric):
    """Observations by bucket: `observe(amount, labels=None)`; `buckets=` sets the upper bounds
    (default `DEFAULT_BUCKETS`; `+Inf` is always added)."""

    _type = "histogram"

    def __init__(self, name, description, labelNames=None, buckets=DEFAULT_BUCKETS):
        bounds = [float(b) for b in buckets]
        if bounds and isinf(bounds[-1]):
            bounds.pop()
        if not bounds or any(a >= b for a, b in zip(bounds, bounds[1:])):
            raise MetricError(f"histogram {name!r}: buckets must be a non-empty, strictly increasing list")
        self.buckets = tuple(bounds)
        self._width = len(bounds) + 2  # per-bucket counts (+Inf last), then the sum
        super().__init__(name, description, labelNames)

    def observe(self, amount, labels=None):
        cells = self._resolve(labels)
        if cells.__class__ is _LocalCells:
            v = cells.v
            v[bisect_left(self.buckets, amount)] += 1
            v[-1] += amount
        else:
            cells.add(bisect_left(self.buckets, amount), 1)
            cells.add(self._width - 1, amount)

    def _samples(self, out, values, cells):
        cumulative = 0.0
        for le, n in zip(self.buckets + (float("inf"),), cells):
            cumulative += n
            bound = "+Inf" if isinf(le) else repr(le)
            out.append(f'{self.name}_bucket{self._label_text(values, f"le={chr(34)}{bound}{chr(34)}")} {_fmt(cumulative)}')
        out.append(f"{self.name}_sum{self._label_text(values)} {_fmt(cells[-1])}")
        out.append(f"{self.name}_count{self._label_text(values)} {_fmt(cumulative)}")


# ---------------------------------------------------------------------------------------------
# The runtime's own request metrics and the registry.


class RequestMetrics:
    """Requests served, by route, method and status, and their latency. Runs on every request:
    one dict lookup and three cell updates."""

    __slots__ = ("requests", "duration", "_fast")

    def __init__(self):
        self.requests = Counter("lambda_requests_total", "Requests served by this lambda.", ("route", "method", "status"))
        self.duration = Histogram(
            "lambda_request_duration_seconds", "Time to answer a request.", ("route", "method", "status"), REQUEST_BUCKETS
        )
        self._fast = {}

    def observe(self, route, method, status, seconds):
        key = (route, method, status)
        pair = self._fast.get(key)
        if pair is None:
            values = (route, method, str(status))
            pair = self._fast[key] = (self.requests._child(values), self.duration._child(values))
        count, hist = pair
        if count.__class__ is _LocalCells:  # one process: plain list updates, no method calls
            count.v[0] += 1
            v = hist.v
            v[bisect_left(REQUEST_BUCKETS, seconds)] += 1
            v[-1] += seconds
        else:
            count.add(0, 1)
            hist.add(bisect_left(REQUEST_BUCKETS, seconds), 1)
            hist.add(len(REQUEST_BUCKETS) + 1, seconds)


class Registry:
    """The metrics rendered on `/metrics`: the runtime's (its request metrics and the families
    in `runtime`), then the user's `USER_METRICS`, each initialized with `lambda_id` and this
    registry."""

    def __init__(self, user_metrics=(), runtime=(), lambda_id=""):
        self.requests = RequestMetrics()
        self.families = [self.requests.requests, self.requests.duration, *runtime]
        seen = {m.name for m in self.families}
        own = ", ".join(sorted(seen))
        for m in user_metrics:
            if not isinstance(m, _Metric):
                raise MetricError(
                    f"USER_METRICS holds {m!r}; it may hold only Counter, Gauge, Histogram and Summary "
                    "objects from luna_lambda_tools.public.metrics.user_metrics"
                )
            if m.name in seen:
                raise MetricError(f"metric name {m.name!r} is used twice (the runtime's own metrics are {own})")
            seen.add(m.name)
            self.families.append(m)
            m.initialize(lambda_id, self)

    def observe(self, route, method, status, seconds):
        self.requests.observe(route, method, status, seconds)

    def render(self):
        folder = _shared_dir()
        shared = _read_shared(folder) if folder else None
        out = []
        for family in self.families:
            family.render(out, shared)
        return "\n".join(out) + "\n"
