"""Exceptions a lambda raises: `UserException(statusCode, errorText)` answers with that status;
`UserTaskLambdaException(errorText)` fails a task lambda's subtask."""

from ..exceptions import UserException, UserTaskLambdaException

__all__ = ["UserException", "UserTaskLambdaException"]
