"""The lambda HTTP server: a plain ASGI app served by uvicorn (httptools + uvloop).

Routes: `GET|POST /main` → `await lambda_main.main(request)`; `GET /healthcheck`; `GET /docs`;
`GET /metrics` and `GET /lambda_metrics` (the runtime's request metrics and the lambda's
`USER_METRICS`); and the paths of the lambda's `LambdaUserHandler` classes. Every response carries
`Luna-Request-Id` (echoed, or generated as `<unix seconds>,<uuid4>`) and `Lambda-Version`.
"""

import importlib
import inspect

import orjson
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
import uuid

from .config import lambdaConfig
from .exceptions import BadRequest, LunaServicesNotConfigured, UserException
from .exceptions import error_body as _error
from .logger import logger
from .metrics import METRICS_DIR_ENV, MetricError, Registry
from .monitoring import POINTS, last_activity, write_request_point
from .request import HandlersLambdaRequest, StandaloneLambdaRequest, UserConfig
from .tasks import BaseLambdaTask
from .tasks_server import TaskRoutes
from .user_handlers import METHODS, SERVED_ROUTES, HandlerResponse, RouteError, StreamResponse, collect_routes

_JSON = (b"content-type", b"application/json")
_PROMETHEUS = (b"content-type", b"text/plain; version=0.0.4; charset=utf-8")
_ROUTES = SERVED_ROUTES
_perf = time.perf_counter


class LambdaLoadError(Exception):
    """lambda_main cannot serve: it fails to import, has no `async def main`, or its
    `USER_METRICS` or handler routes are wrong."""


def load_lambda_module(name="lambda_main", lambda_type=None):
    """Imports the user's module and checks its entry point: `async def main`, or for a tasks
    lambda exactly one `BaseLambdaTask` subclass. Raises LambdaLoadError with a clear message
    (and the traceback of an import failure)."""
    lambda_type = lambda_type or lambdaConfig.lambdaType
    try:
        module = importlib.import_module(name)
    except Exception:  # noqa: BLE001 - any import failure of user code is reported the same way
        raise LambdaLoadError(f"cannot import {name}.py:\n{traceback.format_exc()}") from None
    if lambda_type == "tasks":
        task_class(module)
        return module
    main = getattr(module, "main", None)
    if main is None:
        raise LambdaLoadError(f"{name}.py has no `main`; define `async def main(request) -> dict`")
    if not inspect.iscoroutinefunction(main):
        raise LambdaLoadError(f"{name}.main is not `async def`; define `async def main(request) -> dict`")
    return module


def task_class(module):
    """The one `BaseLambdaTask` subclass a tasks lambda defines."""
    found = [
        v
        for v in vars(module).values()
        if isinstance(v, type) and issubclass(v, BaseLambdaTask) and v is not BaseLambdaTask and v.__module__ == module.__name__
    ]
    if len(found) != 1:
        names = ", ".join(sorted(c.__name__ for c in found)) or "none"
        raise LambdaLoadError(
            f"a tasks lambda's {module.__name__}.py defines exactly one BaseLambdaTask subclass; found {names}"
        )
    cls = found[0]
    for names in (("splitTasksContent", "splitTask2SubTasks"), ("executeSubtask", "execute")):
        defined = [n for n in names if getattr(cls, n) is not getattr(BaseLambdaTask, n)]
        if not defined:
            raise LambdaLoadError(f"{cls.__name__} must define `async def {names[0]}(self, ...)` (or `{names[1]}`)")
        for name in defined:
            if not inspect.iscoroutinefunction(getattr(cls, name)):
                raise LambdaLoadError(f"{cls.__name__}.{name} must be `async def`")
    return cls


def _user_metrics(module, lambda_id):
    metrics = getattr(module, "USER_METRICS", ())
    if not isinstance(metrics, (list, tuple)):
        raise LambdaLoadError(f"USER_METRICS in {module.__name__}.py must be a list of metrics, not {type(metrics).__name__}")
    try:
        return Registry(metrics, runtime=(POINTS,), lambda_id=lambda_id)
    except MetricError as e:
        raise LambdaLoadError(f"{module.__name__}.py: {e}") from None


def _user_routes(module):
    try:
        routes = collect_routes(module)
    except RouteError as e:
        raise LambdaLoadError(f"{module.__name__}.py: {e}") from None
    for route in routes:
        for name in route.allowed():
            if not inspect.iscoroutinefunction(getattr(route.cls, name.lower())):
                raise LambdaLoadError(f"{route.cls.__qualname__}.{name.lower()} must be `async def`")
    return routes


_DUMPS_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def _query_flag(scope, name):
    """`?name=0|1` → False/True (absent: False); anything else raises BadRequest."""
    qs = scope.get("query_string", b"")
    if not qs:
        return False
    from urllib.parse import parse_qsl

    for k, v in parse_qsl(qs.decode("latin-1"), keep_blank_values=True):
        if k == name:
            if v in ("0", "1"):
                return v == "1"
            raise BadRequest(12004, "Bad query parameter", f"query parameter '{name}' must be 0 or 1, got {v!r}")
    return False


def _load_handlers_schemas():
    """Loads `request.data`'s schemas (pydantic) at start, not on the first request. Without
    pydantic (a base image built before the runtime needed it) only `request.data` fails."""
    try:
        importlib.import_module(".handlers_data", __package__)
    except ImportError as e:
        logger.warning("handlers lambda: request.data is not available: %s", e)


class _StreamWriter:
    """The `response` a streaming function writes to."""

    __slots__ = ("_send",)

    def __init__(self, send):
        self._send = send

    async def write(self, data):
        chunk = data.encode() if isinstance(data, str) else bytes(data)
        if chunk:
            await self._send({"type": "http.response.body", "body": chunk, "more_body": True})


class LambdaApp:
    """The ASGI application of one lambda."""

    def __init__(self, module, config=lambdaConfig, lambda_dir=None):
        self.main = getattr(module, "main", None)
        self.tasks = TaskRoutes(task_class(module)) if config.lambdaType == "tasks" else None
        self.user_ctx_cls = getattr(module, "UserCtx", None)
        self.user_ctx = None
        self.request_cls = HandlersLambdaRequest if config.lambdaType == "handlers" else StandaloneLambdaRequest
        if config.lambdaType == "handlers":
            _load_handlers_schemas()
        self.config = UserConfig(config.userConfig)
        self.max_body = config.maxBodyBytes
        self.version = (b"lambda-version", str(config.version).encode())
        self.lambda_id = config.lambdaId
        self.metrics = _user_metrics(module, config.lambdaId)
        self.routes = _user_routes(module)
        lambda_dir = lambda_dir or os.path.dirname(os.path.abspath(module.__file__))
        self.docs_dir = os.path.join(lambda_dir, "docs")

    async def __call__(self, scope, receive, send):
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive, send):
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    if self.tasks is not None:
                        await self.tasks.start()
                    if self.user_ctx_cls is not None:
                        self.user_ctx = self.user_ctx_cls()
                        on_start = getattr(self.user_ctx, "onStart", None)
                        if on_start is not None:
                            await on_start()
                except Exception:  # noqa: BLE001
                    msg = f"UserCtx.onStart failed:\n{traceback.format_exc()}"
                    logger.error(msg)
                    await send({"type": "lifespan.startup.failed", "message": msg})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    if self.tasks is not None:
                        await self.tasks.stop()
                    on_shutdown = getattr(self.user_ctx, "onShutdown", None)
                    if on_shutdown is not None:
                        await on_shutdown()
                except Exception:  # noqa: BLE001
                    logger.error("UserCtx.onShutdown failed:\n%s", traceback.format_exc())
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope, receive, send):
        started = _perf()
        arrived = time.time()
        path = scope["path"]
        method = scope["method"]
        rid = None
        for k, v in scope["headers"]:
            if k == b"luna-request-id":
                rid = v.decode("latin-1")
                break
        if not rid:
            rid = f"{int(arrived)},{uuid.uuid4()}"
        headers = [_JSON]
        label = path
        if path == "/main" and self.tasks is None:
            status, body = await self._main(scope, receive, method, rid, arrived)
        elif self.tasks is not None and path in self.tasks.paths:
            status, body = await self._task_call(scope, receive, method, rid, path)
        elif path == "/main":
            status, body = 404, _error(12006, "Resource not found", "a tasks lambda has no /main; start a task with POST /1/tasks")
        elif path not in _ROUTES:
            status, body, headers, label = await self._user_route(scope, receive, method, rid, path, arrived)
        elif method != "GET":
            status, body = 405, _error(12007, "Method not allowed", f"{method} is not allowed on {path}")
            headers.append((b"allow", b"GET"))
        elif path == "/healthcheck":
            status, body = self._healthcheck(scope, started)
        elif path == "/metrics" or path == "/lambda_metrics":
            status, body = 200, self.metrics.render().encode()
            headers = [_PROMETHEUS]
        else:
            status, body, ctype = self._docs(scope)
            headers = [ctype]
        headers.append((b"luna-request-id", rid.encode("latin-1")))
        headers.append(self.version)
        if body.__class__ is StreamResponse:
            await self._stream(send, status, headers, rid, body)
        else:
            headers.append((b"content-length", str(len(body)).encode()))
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        self.metrics.observe(label, method, status, _perf() - started)

    async def _stream(self, send, status, headers, rid, response):
        """A `LambdaUserHandler.stream` answer: the head, then each chunk as the lambda writes
        it. A failure mid-stream is logged and ends the body (the status is already sent)."""
        await send({"type": "http.response.start", "status": status, "headers": headers})
        try:
            await response.streamingFn(_StreamWriter(send))
        except Exception:  # noqa: BLE001 - user code may raise anything
            logger.error("request %s: the streamed answer failed:\n%s", rid, traceback.format_exc())
        await send({"type": "http.response.body", "body": b""})

    def _healthcheck(self, scope, started):
        try:
            include = _query_flag(scope, "include_luna_services")
        except BadRequest as e:
            return 400, _error(e.error_code, e.desc, e.detail)
        answer = {"execution_time": round(_perf() - started, 6), "last_activity": last_activity()}
        if include:
            # No LUNA service is configured for a lambda of this platform: nothing to check.
            answer["luna_services"] = {}
        return 200, orjson.dumps(answer)

    async def _call_user(self, rid, where, fn, *args, **kwargs):
        """Runs user code; returns (result, None), or (None, (status, error body))."""
        try:
            return await fn(*args, **kwargs), None
        except UserException as e:
            return None, (e.statusCode, _error(42004, "Lambda exception", e.errorText))
        except BadRequest as e:
            return None, (400, _error(e.error_code, e.desc, e.detail))
        except LunaServicesNotConfigured as e:
            logger.error("request %s: %s", rid, e)
            return None, (500, _error(42004, "Lambda exception", str(e)))
        except Exception as e:  # noqa: BLE001 - user code may raise anything
            logger.error("request %s: %s raised:\n%s", rid, where, traceback.format_exc())
            return None, (500, _error(42004, "Lambda exception", f"{type(e).__name__}: {e}"))

    def _report(self, request, route, status):
        """Writes the request's monitoring point when the lambda added tags or fields to it."""
        data = request._monitoring
        if data:
            seconds = time.time() - request.startRequestTime
            write_request_point(data, self.lambda_id, route, status, request.requestId, request.startRequestTime, seconds)

    async def _main(self, scope, receive, method, rid, arrived):
        if method not in ("GET", "POST"):
            return 405, _error(12007, "Method not allowed", f"{method} is not allowed on /main; use GET or POST")
        body = await self._read_body(scope, receive)
        if body is None:
            return 413, self._too_large()
        request = self.request_cls(scope, body, self.config, self.user_ctx, rid, arrived)
        status, answer = await self._answer_main(request, rid)
        self._report(request, f"{method}:/main", status)
        return status, answer

    async def _answer_main(self, request, rid):
        result, failed = await self._call_user(rid, "main", self.main, request)
        if failed is not None:
            return failed
        if not isinstance(result, dict):
            detail = f"main returned {type(result).__name__}, but a lambda must return a dict"
            logger.error("request %s: %s", rid, detail)
            return 500, _error(42004, "Lambda exception", detail)
        return self._dumps(rid, result, "the dict returned by main")

    async def _task_call(self, scope, receive, method, rid, path):
        """`POST /tasks/split` and `POST /tasks/subtask` (the platform's calls)."""
        if method != "POST":
            return 405, _error(12007, "Method not allowed", f"{method} is not allowed on {path}; use POST")
        body = await self._read_body(scope, receive)
        if body is None:
            return 413, self._too_large()
        try:
            call = orjson.loads(body) if body else None
        except orjson.JSONDecodeError as e:
            return 400, _error(12001, "Bad JSON", f"request body is not valid JSON: {e}")
        return await self.tasks.call(path, call, rid)

    def _dumps(self, rid, value, what):
        try:
            return 200, orjson.dumps(value, option=_DUMPS_OPTIONS)
        except TypeError as e:
            detail = f"{what} is not JSON-serializable: {e}"
            logger.error("request %s: %s", rid, detail)
            return 500, _error(42004, "Lambda exception", detail)

    def _too_large(self):
        return _error(12003, "Request body too large", f"the body is larger than {self.max_body} bytes (LAMBDA_MAX_BODY_BYTES)")

    async def _user_route(self, scope, receive, method, rid, path, arrived):
        """A `LambdaUserHandler` route: (status, body, headers, metrics label)."""
        for route in self.routes:
            params = route.match(path)
            if params is not None:
                break
        else:
            return 404, _error(12006, "Resource not found", f"no route {path}; lambdas answer on /main"), [_JSON], "other"
        name = method.lower()
        if name not in METHODS or not callable(getattr(route.cls, name, None)):
            allowed = route.allowed()
            detail = f"{method} is not allowed on {route.route}; allowed: {', '.join(allowed) or 'none'}"
            return 405, _error(12007, "Method not allowed", detail), [_JSON, (b"allow", ", ".join(allowed).encode())], route.route
        body = await self._read_body(scope, receive)
        if body is None:
            return 413, self._too_large(), [_JSON], route.route
        request = self.request_cls(scope, body, self.config, self.user_ctx, rid, arrived)
        answer = await self._answer_route(request, route, name, params, rid)
        self._report(request, f"{method}:{route.route}", answer[0])
        return answer

    async def _answer_route(self, request, route, name, params, rid):
        """Runs a handler method: (status, body, headers, metrics label)."""
        where = f"{route.cls.__qualname__}.{name}"

        async def call():
            return await route.cls(request).dispatchRequest(request, **params)

        result, failed = await self._call_user(rid, where, call)
        if failed is not None:
            return failed[0], failed[1], [_JSON], route.route
        if isinstance(result, (HandlerResponse, StreamResponse)):
            headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in result.headers.items() if k != "content-length"]
            body = result.body if isinstance(result, HandlerResponse) else result
            return result.status, body, headers, route.route
        if result is None:
            return 204, b"", [], route.route
        if isinstance(result, (dict, list)):
            status, body = self._dumps(rid, result, f"the value returned by {where}")
            return status, body, [_JSON], route.route
        detail = f"{where} returned {type(result).__name__}; return self.success(...), self.sendResponse(...), a dict or a list"
        logger.error("request %s: %s", rid, detail)
        return 500, _error(42004, "Lambda exception", detail), [_JSON], route.route

    async def _read_body(self, scope, receive):
        """The whole body, or None when it is larger than the limit."""
        for k, v in scope["headers"]:
            if k == b"content-length":
                try:
                    if int(v) > self.max_body:
                        return None
                except ValueError:
                    pass
                break
        message = await receive()
        body = message.get("body", b"")
        if not message.get("more_body"):
            return body
        chunks = [body]
        size = len(body)
        while message.get("more_body"):
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    def _docs(self, scope):
        accept = ""
        for k, v in scope["headers"]:
            if k == b"accept":
                accept = v.decode("latin-1").lower()
                break
        if "yaml" in accept or "yml" in accept:
            name, ctype = "lambda.yml", (b"content-type", b"application/x-yaml")
        else:
            name, ctype = "lambda.html", (b"content-type", b"text/html; charset=utf-8")
        path = os.path.join(self.docs_dir, name)
        try:
            with open(path, "rb") as f:
                return 200, f.read(), ctype
        except FileNotFoundError:
            return 404, _error(12006, "Resource not found", "this lambda has no docs (docs/lambda.html and docs/lambda.yml)"), _JSON


_SUPERVISOR_ENV = "LUNA_LAMBDA_SUPERVISOR_PID"


def _die_with_parent():
    """A worker ends when its supervisor dies, even by SIGKILL: no orphan workers (Linux)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    # The supervisor died before prctl took effect. Compared with the supervisor's own pid, not
    # with 1: in a container the supervisor *is* pid 1.
    supervisor = int(os.environ.get(_SUPERVISOR_ENV) or 0)
    if supervisor and os.getppid() != supervisor:
        os._exit(1)


def create_app():
    """App factory used by each worker process when LAMBDA_WORKERS > 1."""
    _die_with_parent()
    return LambdaApp(load_lambda_module())


def _listen_options(cfg):
    """Where uvicorn serves: the listening socket the platform handed over (LAMBDA_LISTEN_FD),
    else LAMBDA_HOST:LAMBDA_PORT. A socket handed over as stdin moves to a descriptor of its
    own, not inherited, and stdin becomes /dev/null again."""
    fd = cfg.listenFd
    if fd is None:
        return dict(host=cfg.host, port=cfg.port)
    if fd == 0:
        fd = os.dup(0)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
    # Not inherited by the processes the lambda starts (uvicorn's workers get theirs from it).
    os.set_inheritable(fd, False)
    return dict(fd=fd)


def main(debug=False):
    """Entry point of run.py. Returns the process exit code. `debug` (run_debug): one process
    on the standard asyncio loop, debug logging, so that a debugger can step through the code."""
    cfg = lambdaConfig
    # First, before any user code: a socket handed over as stdin must not be inherited by what
    # the lambda starts as it imports.
    listen = _listen_options(cfg)
    try:
        module = load_lambda_module()
        app = LambdaApp(module, cfg)
    except LambdaLoadError as e:
        print(f"luna-lambda runtime: {e}", file=sys.stderr, flush=True)
        return 3
    import uvicorn

    workers = 1 if debug else cfg.workers
    if debug:
        logger.setLevel("DEBUG")
    logger.info(
        "serving %s lambda %s v%s on %s:%d with %d worker(s)%s",
        cfg.lambdaType,
        cfg.lambdaId or "(local)",
        cfg.version,
        cfg.host,
        cfg.port,
        workers,
        ", " + ", ".join(f"{r.route} ({r.cls.__qualname__})" for r in app.routes) if app.routes else "",
    )
    options = dict(
        **listen,
        loop="asyncio" if debug else "uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="debug" if debug else "warning",
        timeout_graceful_shutdown=cfg.shutdownTimeout,
        server_header=False,
        date_header=False,
    )
    # uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown, with the handlers it found
    # installed; with these no-op handlers a graceful stop ends with exit code 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    if workers == 1:
        uvicorn.run(app, **options)
        return 0
    # Several workers: they share their metrics (summed on /metrics) through files in one folder.
    os.environ[_SUPERVISOR_ENV] = str(os.getpid())
    shared = tempfile.mkdtemp(prefix="luna-lambda-metrics-")
    os.environ[METRICS_DIR_ENV] = shared
    try:
        uvicorn.run("luna_lambda_tools.server:create_app", factory=True, workers=workers, **options)
    finally:
        shutil.rmtree(shared, ignore_errors=True)
    return 0
