"""Handlers lambdas (`schemas`, the pydantic models of the body, is imported on its own)."""

from .handlers_request import HandlersLambdaRequest

__all__ = ["HandlersLambdaRequest"]
