"""Exceptions a lambda raises or meets, and the LUNA error body the runtime answers with."""

import orjson


def error_body(code: int, desc: str, detail: str) -> bytes:
    """`{"error_code", "desc", "detail"}` as JSON bytes."""
    return orjson.dumps({"error_code": code, "desc": desc, "detail": detail})


class UserException(Exception):
    """Raise to answer with `statusCode` and an error body whose `detail` is `errorText`.

    The body is `{"error_code": 42004, "desc": "Lambda exception", "detail": errorText}`.
    """

    def __init__(self, statusCode: int = 400, errorText: str = ""):
        super().__init__(errorText)
        if not isinstance(statusCode, int) or not 400 <= statusCode <= 599:
            raise ValueError(f"UserException statusCode must be an int from 400 to 599, got {statusCode!r}")
        self.statusCode = statusCode
        self.errorText = str(errorText)


class UserTaskLambdaException(Exception):
    """Raise in a task lambda's subtask to fail that subtask with `errorText`."""

    def __init__(self, errorText: str = ""):
        super().__init__(errorText)
        self.errorText = str(errorText)


class LunaServicesNotConfigured(RuntimeError):
    """`request.clients` was used, but no LUNA service is configured for this lambda."""


class BadRequest(Exception):
    """The request itself is malformed (e.g. invalid JSON); answered with 400."""

    def __init__(self, error_code: int, desc: str, detail: str):
        super().__init__(detail)
        self.error_code = error_code
        self.desc = desc
        self.detail = detail
