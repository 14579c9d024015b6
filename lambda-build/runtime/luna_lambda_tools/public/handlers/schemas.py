"""Pydantic models of the body luna-handlers sends a handlers lambda (see
luna_lambda_tools.handlers_schemas). In a handlers lambda `request.data` is the body parsed
into `EventSourceSchema`; `request.getRequestData(Model)` parses it into another model."""

from ...handlers_schemas import *  # noqa: F403 (the names of its __all__)
from ...handlers_schemas import __all__
