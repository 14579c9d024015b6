"""Task lambdas: `BaseLambdaTask` (see luna_lambda_tools.tasks)."""

from ..exceptions import UserTaskLambdaException
from ..tasks import BaseLambdaTask

__all__ = ["BaseLambdaTask", "UserTaskLambdaException"]
