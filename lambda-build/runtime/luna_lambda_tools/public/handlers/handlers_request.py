"""`HandlersLambdaRequest`: the request of a handlers lambda."""

from ...request import HandlersLambdaRequest

__all__ = ["HandlersLambdaRequest"]
