"""Additional routes: classes of `lambda_main.py` that subclass `LambdaUserHandler` and set
`route` are served on that path, next to `/main`.

    class Item(LambdaUserHandler):
        route = "/items/<item_id:int>"

        async def get(self, item_id):
            return self.success(json={"id": item_id, "q": self.getQueryParam("q", require=True)})

Paths use Sanic's syntax: `<name>` (one path segment), `<name:int>`, `<name:float>`,
`<name:uuid>`, `<name:path>` (the rest of the path, slashes included). Each method
(`get`, `post`, `put`, `patch`, `delete`) is `async def` and gets the path parameters as keyword
arguments; a method the class lacks answers 405 with `Allow`. The runtime calls
`dispatchRequest`, which calls the method: override it to wrap every method of a handler.
"""

import re
import uuid
from typing import Any, Awaitable, Callable, Optional, Union

import orjson

from .exceptions import BadRequest, UserException
from .request import HandlersLambdaRequest, StandaloneLambdaRequest, UserConfig

#: Paths the runtime serves to every lambda.
SERVED_ROUTES = ("/main", "/healthcheck", "/docs", "/metrics", "/lambda_metrics")
#: The platform's calls into a tasks lambda.
TASK_ROUTES = ("/tasks/split", "/tasks/subtask")
#: Paths a handler may not take (the validator reads them from the runtime's manifest).
RUNTIME_ROUTES = SERVED_ROUTES + TASK_ROUTES
METHODS = ("get", "post", "put", "patch", "delete")

_PARAM = re.compile(r"<([^<>/]*)>")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TYPES = {
    "str": (r"[^/]+", str),
    "int": (r"-?\d+", int),
    "float": (r"-?\d+(?:\.\d+)?", float),
    "uuid": (r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", uuid.UUID),
    "path": (r".+", str),
}


class RouteError(ValueError):
    """A handler's `route` is malformed or collides with another route."""


class HandlerResponse:
    """What a handler method returns (`sendResponse`, `success`, `error`)."""

    __slots__ = ("status", "body", "headers")

    def __init__(self, status, body, headers):
        self.status = status
        self.body = body
        self.headers = headers


class StreamResponse:
    """What `LambdaUserHandler.stream` returns: the runtime sends the status and headers, then
    calls `streamingFn(response)`, whose `await response.write(data)` sends each chunk."""

    __slots__ = ("status", "headers", "streamingFn")

    def __init__(self, status, headers, streamingFn):
        self.status = status
        self.headers = headers
        self.streamingFn = streamingFn


_validators: dict[int, tuple[Any, Callable[[Any], Any]]] = {}


def _json_schema_validator(schema):
    """The compiled validator of `schema` (compiled once per schema object)."""
    cached = _validators.get(id(schema))
    if cached is not None and cached[0] is schema:
        return cached[1]
    import fastjsonschema

    validate = fastjsonschema.compile(schema)
    _validators[id(schema)] = (schema, validate)
    return validate


class Route:
    """One compiled route: the handler class, its pattern and its parameter converters."""

    __slots__ = ("cls", "route", "shape", "regex", "converters", "static")

    def __init__(self, cls):
        route = getattr(cls, "route", None)
        where = f"{cls.__module__}.{cls.__qualname__}"
        if not isinstance(route, str) or not route.startswith("/"):
            raise RouteError(f"{where}.route must be a path starting with '/', got {route!r}")
        self.cls = cls
        self.route = route
        self.converters = {}
        pattern, shape, pos = [], [], 0
        for m in _PARAM.finditer(route):
            literal = route[pos : m.start()]
            if "<" in literal or ">" in literal:
                raise RouteError(f"{where}.route {route!r}: unbalanced '<' or '>'")
            pattern.append(re.escape(literal))
            shape.append(literal)
            name, _, kind = m.group(1).partition(":")
            kind = kind or "str"
            if not _IDENT.match(name):
                raise RouteError(f"{where}.route {route!r}: parameter <{m.group(1)}> needs a Python name")
            if kind not in _TYPES:
                raise RouteError(f"{where}.route {route!r}: parameter type {kind!r} is not one of {sorted(_TYPES)}")
            if name in self.converters:
                raise RouteError(f"{where}.route {route!r}: parameter {name!r} appears twice")
            regex, convert = _TYPES[kind]
            pattern.append(f"(?P<{name}>{regex})")
            shape.append("<>")
            self.converters[name] = convert
            pos = m.end()
        tail = route[pos:]
        if "<" in tail or ">" in tail:
            raise RouteError(f"{where}.route {route!r}: unbalanced '<' or '>'")
        pattern.append(re.escape(tail))
        shape.append(tail)
        self.shape = "".join(shape).rstrip("/") or "/"
        self.static = not self.converters
        self.regex = re.compile("^" + "".join(pattern).rstrip("/") + "/?$")
        if self.shape in RUNTIME_ROUTES:
            raise RouteError(f"{where}.route {route!r} collides with the runtime's route {self.shape}; choose another path")

    def match(self, path):
        m = self.regex.match(path)
        if m is None:
            return None
        try:
            return {k: self.converters[k](v) for k, v in m.groupdict().items()}
        except ValueError:
            return None

    def allowed(self):
        return [m.upper() for m in METHODS if callable(getattr(self.cls, m, None))]


def collect_routes(module):
    """The routes of every `LambdaUserHandler` subclass with a `route` in `module`, checked for
    collisions with the runtime and with each other. Raises RouteError."""
    routes = []
    seen = {}
    for value in list(vars(module).values()):
        if not (isinstance(value, type) and issubclass(value, LambdaUserHandler) and value is not LambdaUserHandler):
            continue
        if getattr(value, "route", None) is None:
            continue
        route = Route(value)
        other = seen.get(route.shape)
        if other is not None and other is not value:
            raise RouteError(
                f"{value.__qualname__}.route {route.route!r} collides with {other.__qualname__}.route "
                f"{getattr(other, 'route')!r}; two handlers cannot serve the same path"
            )
        seen[route.shape] = value
        routes.append(route)
    # Static paths first, so "/items/new" wins over "/items/<id>".
    routes.sort(key=lambda r: (not r.static, r.route))
    return routes


class LambdaUserHandler:
    """Base class of additional routes. Subclasses set `route` and define `async def get/post/
    put/patch/delete(self, **path_params)`. `self.request` is the request object `main` gets,
    `self.config` its config (`.userConfig`)."""

    route: Optional[str] = None

    def __init__(self, request: Union[StandaloneLambdaRequest, HandlersLambdaRequest]):
        self.request = request
        self.config: UserConfig = request.config

    # Responses -------------------------------------------------------------------------------

    def sendResponse(
        self, statusCode: int = 200, json: Any = None, body: Union[bytes, str, None] = None, headers: Optional[dict[str, str]] = None
    ) -> HandlerResponse:
        """A response: `json` (serialized) or `body` (bytes or str), not both."""
        if json is not None and body is not None:
            raise ValueError("sendResponse takes json or body, not both")
        if not isinstance(statusCode, int) or not 100 <= statusCode <= 599:
            raise ValueError(f"statusCode must be an int from 100 to 599, got {statusCode!r}")
        out = {k.lower(): str(v) for k, v in (headers or {}).items()}
        if json is not None:
            payload = orjson.dumps(json, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY)
            out.setdefault("content-type", "application/json")
        elif body is not None:
            payload = body.encode() if isinstance(body, str) else bytes(body)
            out.setdefault("content-type", "text/plain; charset=utf-8" if isinstance(body, str) else "application/octet-stream")
        else:
            payload = b""
        return HandlerResponse(statusCode, payload, out)

    def success(
        self, statusCode: int = 200, json: Any = None, body: Union[bytes, str, None] = None, headers: Optional[dict[str, str]] = None
    ) -> HandlerResponse:
        """A 2xx response (default 200)."""
        if not isinstance(statusCode, int) or not 200 <= statusCode <= 299:
            raise ValueError(f"success needs a 2xx statusCode, got {statusCode!r}")
        return self.sendResponse(statusCode, json=json, body=body, headers=headers)

    def error(self, statusCode: int, error: Union[str, dict[str, Any]]) -> HandlerResponse:
        """An error response in the LUNA format: `{"error_code": 42004, "desc": "Lambda
        exception", "detail": error}` (a dict `error` is sent as it is)."""
        if not isinstance(statusCode, int) or not 400 <= statusCode <= 599:
            raise ValueError(f"error needs a statusCode from 400 to 599, got {statusCode!r}")
        payload = error if isinstance(error, dict) else {"error_code": 42004, "desc": "Lambda exception", "detail": str(error)}
        return self.sendResponse(statusCode, json=payload)

    def stream(
        self,
        streamingFn: Callable[[Any], Awaitable[None]],
        statusCode: int = 200,
        headers: Optional[dict[str, str]] = None,
        contentType: str = "text/plain; charset=utf-8",
    ) -> StreamResponse:
        """A streamed response: return it, and the runtime sends the status and headers, then
        runs `await streamingFn(response)`; each `await response.write(data)` (str or bytes)
        goes out as it is written."""
        if not callable(streamingFn):
            raise ValueError("stream needs an async function taking the response to write to")
        if not isinstance(statusCode, int) or not 100 <= statusCode <= 599:
            raise ValueError(f"statusCode must be an int from 100 to 599, got {statusCode!r}")
        out = {k.lower(): str(v) for k, v in (headers or {}).items()}
        out.setdefault("content-type", contentType)
        return StreamResponse(statusCode, out, streamingFn)

    # Dispatch and monitoring -----------------------------------------------------------------

    async def dispatchRequest(self, request: Any = None, *args: Any, **kwargs: Any) -> Any:
        """Calls the method of this handler named by the request's HTTP method with the path
        parameters (`request` defaults to `self.request`, and is not passed on); a method the
        handler lacks answers 405."""
        request = self.request if request is None else request
        method = getattr(self, request.method.lower(), None) if request.method.lower() in METHODS else None
        if not callable(method):
            return self.setMethodNotAllowed()
        return await method(*args, **kwargs)

    def addDataForMonitoring(self, tags: Optional[dict[str, Any]] = None, fields: Optional[dict[str, Any]] = None) -> None:
        """Adds tags and fields to this request's monitoring point (see
        luna_lambda_tools.monitoring)."""
        self.request.dataForMonitoring.add(tags, fields)

    # Request helpers -------------------------------------------------------------------------

    def getQueryParam(
        self, name: str, validator: Optional[Callable[[str], Any]] = None, require: bool = False, default: Any = None
    ) -> Any:
        """The first value of query parameter `name`, passed through `validator` (a callable;
        its exception answers 400 naming the parameter); missing and `require` answers 400."""
        value = self.request.args.get(name)
        if value is None:
            if require:
                raise BadRequest(12004, "Bad query parameter", f"query parameter '{name}' is required")
            return default
        if validator is None:
            return value
        try:
            return validator(value)
        except Exception as e:  # noqa: BLE001 - a validator may raise anything
            raise BadRequest(12004, "Bad query parameter", f"query parameter '{name}'={value!r} is invalid: {e}") from None

    def getPagination(self, defaultPageSize: int = 100, maxPageSize: int = 1000) -> tuple[int, int]:
        """`(page, page_size)` from the query (`page` ≥ 1, 1 ≤ `page_size` ≤ maxPageSize)."""

        def bounded(lo, hi):
            def check(raw):
                n = int(raw)
                if not lo <= n <= hi:
                    raise ValueError(f"must be from {lo} to {hi}")
                return n

            return check

        page = self.getQueryParam("page", bounded(1, 2**31), default=1)
        size = self.getQueryParam("page_size", bounded(1, maxPageSize), default=defaultPageSize)
        return page, size

    def getAccountIdFromHeader(self, required: bool = False) -> Optional[str]:
        """The `Luna-Account-Id` header as a UUID string; malformed, or missing and `required`,
        answers 400."""
        raw = self.request.headers.get("luna-account-id")
        if raw is None:
            if required:
                raise BadRequest(12005, "Bad header", "header 'Luna-Account-Id' is required")
            return None
        try:
            return str(uuid.UUID(raw))
        except ValueError:
            raise BadRequest(12005, "Bad header", f"header 'Luna-Account-Id'={raw!r} is not a UUID") from None

    def loadDataFromJson(self, data: Any, model: Any) -> Any:
        """`data` validated by a pydantic `model`; a mismatch answers 400."""
        try:
            if hasattr(model, "model_validate"):
                return model.model_validate(data)
            return model.parse_obj(data)
        except Exception as e:  # noqa: BLE001 - pydantic.ValidationError and friends
            if type(e).__name__ == "ValidationError" or isinstance(e, (TypeError, ValueError)):
                raise UserException(400, f"data does not match {getattr(model, '__name__', model)}: {e}") from None
            raise

    def validateJson(self, data: Any, schema: dict[str, Any]) -> None:
        """Checks `data` against `schema`, a JSON Schema (draft 4, 6 or 7) dict; a violation
        answers 400 (error_code 12001) naming where (`data.items[0].id must be integer`)."""
        import fastjsonschema

        try:
            _json_schema_validator(schema)(data)
        except fastjsonschema.JsonSchemaValueException as e:
            raise BadRequest(12001, "Bad input data", f"data does not match the JSON schema: {e.message}") from None

    def loadDataFromQuery(self, model: Any) -> Any:
        """The query parameters (first value of each) validated by a pydantic `model`; a
        mismatch answers 400."""
        return self.loadDataFromJson({k: self.request.args.get(k) for k in self.request.args}, model)

    def setMethodNotAllowed(self) -> HandlerResponse:
        """A 405 answer naming the methods this handler serves (in `Allow`)."""
        allowed = self.getAllowedMethods()
        detail = f"{self.request.method} is not allowed on {self.route}; allowed: {', '.join(allowed) or 'none'}"
        response = self.sendResponse(405, json={"error_code": 12007, "desc": "Method not allowed", "detail": detail})
        response.headers["allow"] = ", ".join(allowed)
        return response

    def getAllowedMethods(self) -> list[str]:
        """The HTTP methods this handler serves."""
        return [m.upper() for m in METHODS if callable(getattr(self, m, None))]
