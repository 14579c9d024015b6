"""`StandaloneLambdaRequest`: the request of a standalone lambda."""

from ...request import StandaloneLambdaRequest

__all__ = ["StandaloneLambdaRequest"]
