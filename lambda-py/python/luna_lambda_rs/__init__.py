"""luna_lambda_rs: validate and pack lambdas, drive a luna-lambda-rs platform, or embed one.

    import luna_lambda_rs as ll

    report = ll.validate("my-lambda")            # a folder, a .zip path, or zip bytes
    with ll.Platform.embedded("/tmp/ll-data") as platform:
        client = ll.Client(platform.url, account_id="6f1c1a4e-8f0e-4f57-9d1b-2a8f3c9e0b11")
        lambda_id = client.create("examples/hello", name="hello")
        client.wait_until_running(lambda_id)
        print(client.invoke(lambda_id, {"hi": 1}).json())

Blocking calls release the GIL; `AsyncClient` offers the same methods as coroutines.
"""

from __future__ import annotations

import asyncio
import functools
import os

from ._native import (
    Conflict,
    LambdaError,
    NotFound,
    Problem,
    Report,
    Response,
    ServerError,
    ValidationError,
    pack,
    render_dockerfile,
    validate,
)
from ._native import Client as _NativeClient
from ._native import EmbeddedPlatform as _EmbeddedPlatform

__all__ = [
    "AsyncClient",
    "Client",
    "Conflict",
    "LambdaError",
    "NotFound",
    "Platform",
    "Problem",
    "Report",
    "Response",
    "ServerError",
    "ValidationError",
    "pack",
    "render_dockerfile",
    "validate",
]


class Client(_NativeClient):
    """A client of a luna-lambda-rs server; every method blocks with the GIL released.

    `token` is the API token of a server that requires one (default: `LUNA_LAMBDA_TOKEN`);
    its account is the one acted for unless `account_id` is given. `ca` is a PEM file of CA
    certificates to trust for an https:// server besides the system's (default:
    `LUNA_LAMBDA_CA`)."""

    def __new__(
        cls,
        url: str,
        account_id: str | None = None,
        token: str | None = None,
        ca: str | os.PathLike | None = None,
    ):
        if token is None:
            token = os.environ.get("LUNA_LAMBDA_TOKEN")
        if ca is None:
            ca = os.environ.get("LUNA_LAMBDA_CA") or None
        return super().__new__(cls, url, account_id, token, None if ca is None else os.fspath(ca))


class Platform:
    """The whole platform embedded in this process (local storage, virtualenv builds, local
    processes). Use as a context manager, or call `close()`."""

    def __init__(self, native: _EmbeddedPlatform):
        self._native = native

    @classmethod
    def embedded(cls, data_dir: str | os.PathLike, listen: str = "127.0.0.1:0") -> "Platform":
        return cls(_EmbeddedPlatform.start(os.fspath(data_dir), dict(os.environ), listen))

    @property
    def url(self) -> str:
        return self._native.url

    def client(self, account_id: str | None = None, token: str | None = None) -> Client:
        return Client(self.url, account_id, token)

    def close(self) -> None:
        self._native.close()

    def __enter__(self) -> "Platform":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AsyncClient:
    """`Client` for asyncio: every method is a coroutine run in a worker thread (the native
    calls release the GIL, so the event loop keeps running)."""

    def __init__(
        self,
        url: str,
        account_id: str | None = None,
        token: str | None = None,
        ca: str | os.PathLike | None = None,
    ):
        self._client = Client(url, account_id, token, ca)

    @property
    def url(self) -> str:
        return self._client.url

    def __getattr__(self, name: str):
        method = getattr(self._client, name)
        if not callable(method):
            return method

        @functools.wraps(method)
        async def call(*args, **kwargs):
            return await asyncio.to_thread(method, *args, **kwargs)

        return call
