"""Handlers lambdas (`schemas` needs pydantic and is imported on its own)."""

from .handlers_request import HandlersLambdaRequest

__all__ = ["HandlersLambdaRequest"]
