"""The lambda HTTP server: a plain ASGI app served by uvicorn (httptools + uvloop).

Routes: `GET|POST /main` → `await lambda_main.main(request)`; `GET /healthcheck`; `GET /docs`;
`GET /metrics`. Every response carries `Luna-Request-Id` (echoed, or generated as
`<unix seconds>,<uuid4>`) and `Lambda-Version`.
"""

import importlib
import inspect

import orjson
import os
import signal
import sys
import time
import traceback
import uuid

from .config import lambdaConfig
from .exceptions import BadRequest, LunaServicesNotConfigured, UserException
from .logger import logger
from .metrics import Metrics
from .request import HandlersLambdaRequest, StandaloneLambdaRequest, UserConfig

_JSON = (b"content-type", b"application/json")
_ROUTES = ("/main", "/healthcheck", "/docs", "/metrics")
_perf = time.perf_counter


class LambdaLoadError(Exception):
    """lambda_main cannot serve: it fails to import or has no `async def main`."""


def load_lambda_module(name="lambda_main"):
    """Imports the user's module and checks its `main`. Raises LambdaLoadError with a clear
    message (and the traceback of an import failure)."""
    try:
        module = importlib.import_module(name)
    except Exception:  # noqa: BLE001 - any import failure of user code is reported the same way
        raise LambdaLoadError(f"cannot import {name}.py:\n{traceback.format_exc()}") from None
    main = getattr(module, "main", None)
    if main is None:
        raise LambdaLoadError(f"{name}.py has no `main`; define `async def main(request) -> dict`")
    if not inspect.iscoroutinefunction(main):
        raise LambdaLoadError(f"{name}.main is not `async def`; define `async def main(request) -> dict`")
    return module


_DUMPS_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def _error(code, desc, detail):
    return orjson.dumps({"error_code": code, "desc": desc, "detail": detail})


class LambdaApp:
    """The ASGI application of one lambda."""

    def __init__(self, module, config=lambdaConfig, lambda_dir=None):
        self.main = module.main
        self.user_ctx_cls = getattr(module, "UserCtx", None)
        self.user_ctx = None
        self.request_cls = HandlersLambdaRequest if config.lambdaType == "handlers" else StandaloneLambdaRequest
        self.config = UserConfig(config.userConfig)
        self.max_body = config.maxBodyBytes
        self.version = (b"lambda-version", str(config.version).encode())
        self.metrics = Metrics()
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
                    on_shutdown = getattr(self.user_ctx, "onShutdown", None)
                    if on_shutdown is not None:
                        await on_shutdown()
                except Exception:  # noqa: BLE001
                    logger.error("UserCtx.onShutdown failed:\n%s", traceback.format_exc())
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope, receive, send):
        started = _perf()
        path = scope["path"]
        method = scope["method"]
        rid = None
        for k, v in scope["headers"]:
            if k == b"luna-request-id":
                rid = v.decode("latin-1")
                break
        if not rid:
            rid = f"{int(time.time())},{uuid.uuid4()}"
        ctype = _JSON
        if path == "/main":
            status, body = await self._main(scope, receive, method, rid)
        elif path == "/healthcheck" and method == "GET":
            status, body = 200, b'{"execution_time":%.6f}' % (_perf() - started)
        elif path == "/metrics" and method == "GET":
            status, body = 200, self.metrics.render().encode()
            ctype = (b"content-type", b"text/plain; version=0.0.4")
        elif path == "/docs" and method == "GET":
            status, body, ctype = self._docs(scope)
        elif path in _ROUTES:
            status, body = 405, _error(12007, "Method not allowed", f"{method} is not allowed on {path}")
        else:
            status, body = 404, _error(12006, "Resource not found", f"no route {path}; lambdas answer on /main")
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    ctype,
                    (b"content-length", str(len(body)).encode()),
                    (b"luna-request-id", rid.encode("latin-1")),
                    self.version,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
        self.metrics.observe(path if path in _ROUTES else "other", method, status, _perf() - started)

    async def _main(self, scope, receive, method, rid):
        if method not in ("GET", "POST"):
            return 405, _error(12007, "Method not allowed", f"{method} is not allowed on /main; use GET or POST")
        body = await self._read_body(scope, receive)
        if body is None:
            return 413, _error(12003, "Request body too large", f"the body is larger than {self.max_body} bytes (LAMBDA_MAX_BODY_BYTES)")
        request = self.request_cls(scope, body, self.config, self.user_ctx, rid)
        try:
            result = await self.main(request)
        except UserException as e:
            return e.statusCode, _error(42004, "Lambda exception", e.errorText)
        except BadRequest as e:
            return 400, _error(e.error_code, e.desc, e.detail)
        except LunaServicesNotConfigured as e:
            logger.error("request %s: %s", rid, e)
            return 500, _error(42004, "Lambda exception", str(e))
        except Exception as e:  # noqa: BLE001 - user code may raise anything
            logger.error("request %s: main raised:\n%s", rid, traceback.format_exc())
            return 500, _error(42004, "Lambda exception", f"{type(e).__name__}: {e}")
        if not isinstance(result, dict):
            detail = f"main returned {type(result).__name__}, but a lambda must return a dict"
            logger.error("request %s: %s", rid, detail)
            return 500, _error(42004, "Lambda exception", detail)
        try:
            return 200, orjson.dumps(result, option=_DUMPS_OPTIONS)
        except TypeError as e:
            detail = f"the dict returned by main is not JSON-serializable: {e}"
            logger.error("request %s: %s", rid, detail)
            return 500, _error(42004, "Lambda exception", detail)

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


def main():
    """Entry point of run.py. Returns the process exit code."""
    cfg = lambdaConfig
    try:
        module = load_lambda_module()
    except LambdaLoadError as e:
        print(f"luna-lambda runtime: {e}", file=sys.stderr, flush=True)
        return 3
    import uvicorn

    logger.info(
        "serving %s lambda %s v%s on %s:%d with %d worker(s)",
        cfg.lambdaType,
        cfg.lambdaId or "(local)",
        cfg.version,
        cfg.host,
        cfg.port,
        cfg.workers,
    )
    options = dict(
        host=cfg.host,
        port=cfg.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=cfg.shutdownTimeout,
        server_header=False,
        date_header=False,
    )
    # uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown, with the handlers it found
    # installed; with these no-op handlers a graceful stop ends with exit code 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    if cfg.workers > 1:
        os.environ[_SUPERVISOR_ENV] = str(os.getpid())
        uvicorn.run("luna_lambda_tools.server:create_app", factory=True, workers=cfg.workers, **options)
    else:
        uvicorn.run(LambdaApp(module, cfg), **options)
    return 0
