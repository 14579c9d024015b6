"""Standalone lambdas."""

from .standalone_request import StandaloneLambdaRequest

__all__ = ["StandaloneLambdaRequest"]
