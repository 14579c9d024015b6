"""Task lambdas (`lambda_type = "tasks"`): the platform splits a task into subtasks with
`splitTasksContent` and runs each with `executeSubtask`, across the lambda's replicas.

    from luna_lambda_tools.public.tasks import BaseLambdaTask
    from luna_lambda_tools.public.exceptions import UserTaskLambdaException

    class SumTask(BaseLambdaTask):
        async def splitTasksContent(self, content: dict) -> list[dict]:
            return [{"from": a, "to": a + 10} for a in range(0, content["n"], 10)]

        async def executeSubtask(self, subTaskContent: dict) -> dict:
            return {"sum": sum(range(subTaskContent["from"], subTaskContent["to"]))}

`lambda_main.py` of a task lambda defines exactly one `BaseLambdaTask` subclass (and no `main`).
Raising `UserTaskLambdaException(errorText)` fails that subtask (or the split) with that text and
is not retried; any other exception is retried on another attempt, up to the platform's
`[tasks] max_attempts`.
"""

from typing import Any, Union

from .config import lambdaConfig
from .logger import logger as _logger
from .request import UserConfig


class BaseLambdaTask:
    """Base class of a task lambda. One instance is built when the lambda starts (`onStart` runs
    on it); each split and subtask runs on a copy of it carrying that call's `taskId`,
    `lambdaId` and `accountId`, so what `onStart` set up is shared."""

    taskId: str
    lambdaId: str
    accountId: str
    config: UserConfig

    def __init__(self) -> None:
        self.taskId = ""
        self.lambdaId = lambdaConfig.lambdaId
        self.accountId = ""
        self.config = UserConfig(lambdaConfig.userConfig)
        self.logger = _logger

    async def onStart(self) -> None:
        """Runs once when the lambda process starts."""

    async def onShutdown(self) -> None:
        """Runs once when the lambda process stops."""

    async def splitTasksContent(self, content: dict[str, Any]) -> list[dict[str, Any]]:
        """Splits the task's `content` into the contents of its subtasks."""
        raise NotImplementedError(f"{type(self).__name__} must define `async def splitTasksContent(self, content)`")

    async def executeSubtask(self, subTaskContent: dict[str, Any]) -> Union[dict[str, Any], list[Any]]:
        """Runs one subtask; its result (a dict or a list) is stored with the task."""
        raise NotImplementedError(f"{type(self).__name__} must define `async def executeSubtask(self, subTaskContent)`")
