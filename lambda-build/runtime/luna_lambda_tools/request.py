"""Request objects handed to `main(request)`."""

import time
from typing import Any, Callable, Iterable, Optional, Union
from urllib.parse import parse_qsl

import orjson

from .config import lambdaConfig
from .exceptions import BadRequest, LunaServicesNotConfigured, UserException
from .monitoring import CustomMonitoringPoint, DataForMonitoring, send_points

_UNSET = object()


class Headers:
    """Case-insensitive, read-only view of the request headers."""

    __slots__ = ("_raw", "_map")

    def __init__(self, raw):
        self._raw = raw  # list of (bytes, bytes) from the ASGI scope
        self._map = None

    def _m(self):
        if self._map is None:
            m = {}
            for k, v in self._raw:
                key = k.decode("latin-1").lower()
                val = v.decode("latin-1")
                m[key] = f"{m[key]}, {val}" if key in m else val
            self._map = m
        return self._map

    def get(self, key: str, default: Optional[str] = None) -> Optional[str]:
        return self._m().get(key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return self._m()[key.lower()]

    def __contains__(self, key):
        return isinstance(key, str) and key.lower() in self._m()

    def __iter__(self):
        return iter(self._m())

    def __len__(self):
        return len(self._m())

    def keys(self):
        return self._m().keys()

    def items(self):
        return self._m().items()

    def values(self):
        return self._m().values()

    def getall(self, key: str) -> list[str]:
        """Every value of a repeated header, in order."""
        k = key.lower().encode("latin-1")
        return [v.decode("latin-1") for name, v in self._raw if name.lower() == k]

    def __repr__(self):
        return f"Headers({self._m()!r})"


class Args(dict[str, list[str]]):
    """Query parameters: `args.get(k)` gives the first value, `args.getlist(k)` all of them,
    and `args[k]` the list (as Sanic's RequestParameters)."""

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        values = super().get(key)
        return values[0] if values else default

    def getlist(self, key: str, default: Optional[list[str]] = None) -> list[str]:
        return super().get(key, default if default is not None else [])


class UserConfig:
    """`request.config`: `.userConfig` is the user config dict given to the lambda."""

    __slots__ = ("userConfig",)
    userConfig: dict[str, Any]

    def __init__(self, userConfig: dict[str, Any]):
        self.userConfig = userConfig


class _BaseRequest:
    __slots__ = (
        "_scope", "_body", "_json", "_data", "_headers", "_args", "_monitoring", "config", "userCtx", "requestId",
        "startRequestTime",
    )
    config: UserConfig
    userCtx: Any
    requestId: str
    startRequestTime: float

    def __init__(self, scope, body, config, userCtx, requestId, startRequestTime=None):
        self._scope = scope
        self._body = body
        self._json = _UNSET
        self._data = _UNSET
        self._headers = None
        self._args = None
        self._monitoring = None
        self.config = config
        self.userCtx = userCtx
        self.requestId = requestId
        #: When the request arrived (unix seconds).
        self.startRequestTime = time.time() if startRequestTime is None else startRequestTime

    @property
    def method(self) -> str:
        return self._scope["method"]

    @property
    def path(self) -> str:
        return self._scope["path"]

    @property
    def body(self) -> bytes:
        return self._body

    def getBody(self) -> bytes:
        return self._body

    @property
    def headers(self) -> Headers:
        if self._headers is None:
            self._headers = Headers(self._scope["headers"])
        return self._headers

    @property
    def args(self) -> Args:
        if self._args is None:
            args = Args()
            qs = self._scope.get("query_string", b"").decode("latin-1")
            for k, v in parse_qsl(qs, keep_blank_values=True):
                args.setdefault(k, []).append(v)
            self._args = args
        return self._args

    def get_args(
        self, keep_blank_values: bool = False, strict_parsing: bool = False, encoding: str = "utf-8", errors: str = "replace"
    ) -> Args:
        """The query parameters as Sanic's `get_args` gives them: each name with the list of its
        values; blank values are dropped unless `keep_blank_values`."""
        args = Args()
        for k, v in self.get_query_args(keep_blank_values, strict_parsing, encoding, errors):
            args.setdefault(k, []).append(v)
        return args

    def get_query_args(
        self, keep_blank_values: bool = False, strict_parsing: bool = False, encoding: str = "utf-8", errors: str = "replace"
    ) -> list[tuple[str, str]]:
        """The query parameters as Sanic's `get_query_args` gives them: `(name, value)` pairs in
        order. With `strict_parsing` a malformed query answers 400."""
        qs = self._scope.get("query_string", b"").decode("latin-1")
        try:
            return parse_qsl(qs, keep_blank_values=keep_blank_values, strict_parsing=strict_parsing, encoding=encoding, errors=errors)
        except ValueError as e:
            raise BadRequest(12004, "Bad query parameter", f"the query string is malformed: {e}") from None

    def load_json(self, loads: Optional[Callable[[bytes], Any]] = None) -> Any:
        """The body parsed as JSON, as Sanic's `load_json`: with `loads` (a function of the raw
        body) instead of the runtime's parser; `None` for an empty body. Invalid JSON answers
        400 with error_code 12001."""
        if loads is None:
            return self.json
        if not self._body:
            return None
        try:
            return loads(self._body)
        except ValueError as e:
            raise BadRequest(12001, "Bad JSON", f"request body is not valid JSON: {e}") from None

    @property
    def json(self) -> Any:
        """The body parsed as JSON (parsed once, on first use); `None` for an empty body.
        Invalid JSON answers 400 with error_code 12001."""
        if self._json is _UNSET:
            if not self._body:
                self._json = None
            else:
                try:
                    self._json = orjson.loads(self._body)
                except orjson.JSONDecodeError as e:
                    raise BadRequest(12001, "Bad JSON", f"request body is not valid JSON: {e}") from None
        return self._json

    @property
    def dataForMonitoring(self) -> DataForMonitoring:
        """Tags and fields added to this request's monitoring point (`.add(tags, fields)`); see
        luna_lambda_tools.monitoring for where points go."""
        if self._monitoring is None:
            self._monitoring = DataForMonitoring()
        return self._monitoring

    def sendToMonitoring(self, points: Union[CustomMonitoringPoint, Iterable[CustomMonitoringPoint]]) -> None:
        """Writes one `CustomMonitoringPoint` or several (see luna_lambda_tools.monitoring)."""
        send_points(points, lambdaConfig.lambdaId)

    @property
    def clients(self) -> Any:
        raise LunaServicesNotConfigured(
            "request.clients needs the LUNA services' configuration (LUNA_FACES_ADDRESS, "
            "LUNA_EVENTS_ADDRESS, LUNA_REMOTE_SDK_ADDRESS, ... from the Luna-Configurator), which this "
            "platform does not provide; call the services over HTTP with their addresses in the "
            "lambda's `env` parameters instead"
        )


class StandaloneLambdaRequest(_BaseRequest):
    """Request of a standalone lambda: sent directly to the lambda."""

    __slots__ = ()


_MSGPACK_TYPES = ("application/msgpack", "application/x-msgpack", "application/vnd.msgpack")


class HandlersLambdaRequest(_BaseRequest):
    """Request of a handlers lambda: sent by luna-handlers. `.json` is the decoded body, `.data`
    the body parsed into `EventSourceSchema`, and `.handlerId` comes from the `Luna-Handler-Id`
    header. A body sent as `Content-Type: application/msgpack` is decoded as MessagePack, any
    other as JSON."""

    __slots__ = ()

    @property
    def json(self) -> Any:
        if self._json is _UNSET and self._body:
            ctype = (self.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
            if ctype in _MSGPACK_TYPES:
                import msgpack

                try:
                    self._json = msgpack.unpackb(self._body, raw=False, strict_map_key=False)
                except Exception as e:  # noqa: BLE001 - msgpack raises several unrelated types
                    raise BadRequest(12001, "Bad msgpack", f"request body is not valid MessagePack: {e}") from None
        return _BaseRequest.json.fget(self)

    @property
    def data(self) -> Any:
        """The body parsed into `EventSourceSchema` (once, on first use): `request.data.sources`,
        `.aggregateAttributes`, `.useExifInfo`, `.sourceData`. A body that does not match answers
        400 (error_code 12001) naming the field."""
        if self._data is _UNSET:
            from .handlers_data import event_sources

            self._data = event_sources(self.json)
        return self._data

    @property
    def handlerId(self) -> Optional[str]:
        return self.headers.get("luna-handler-id")

    def getRequestData(self, model: Any) -> Any:
        """The JSON body converted by `model`: a pydantic model (v2 `model_validate`, v1
        `parse_obj`) or any callable taking the parsed body. A validation failure answers 400."""
        data = self.json
        try:
            if hasattr(model, "model_validate"):
                return model.model_validate(data)
            if hasattr(model, "parse_obj"):
                return model.parse_obj(data)
            return model(data)
        except (BadRequest, UserException):
            raise
        except Exception as e:  # pydantic.ValidationError, TypeError, ValueError, ...
            if type(e).__name__ == "ValidationError" or isinstance(e, (TypeError, ValueError)):
                raise UserException(400, f"request data does not match {getattr(model, '__name__', model)}: {e}") from e
            raise
