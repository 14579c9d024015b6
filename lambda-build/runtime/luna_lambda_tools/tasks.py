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

The original has two names for each step, and a subclass may define either: `splitTasksContent`
or `splitTask2SubTasks`, `executeSubtask` or `execute`, `onShutdown` or `onShutDown`. The
runtime calls `splitTask2SubTasks`, `execute` and `onShutdown`, whose defaults call the other.
"""

from typing import Any, Iterable, Optional, Union

from .config import lambdaConfig
from .exceptions import UserTaskLambdaException
from .logger import logger as _logger
from .monitoring import CustomMonitoringPoint, send_points
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
        """Runs once when the lambda process stops (by default: `onShutDown`)."""
        await self.onShutDown()

    async def onShutDown(self) -> None:
        """The original's name of `onShutdown`: define either."""

    async def start(self, lambdaId: Optional[str] = None) -> None:
        """Starts the task processing of this lambda: the runtime calls it once when the process
        starts; it runs `onStart`. (The platform, not luna-tasks, hands out the subtasks.)"""
        if lambdaId:
            self.lambdaId = lambdaId
        await self.onStart()

    async def separationStart(self, lambdaId: Optional[str] = None) -> None:
        """The original's start of split processing; here the same as `start`: one process
        both splits tasks and runs subtasks."""
        await self.start(lambdaId)

    async def splitTasksContent(self, content: dict[str, Any]) -> list[dict[str, Any]]:
        """Splits the task's `content` into the contents of its subtasks."""
        raise NotImplementedError(f"{type(self).__name__} must define `async def splitTasksContent(self, content)`")

    async def splitTask2SubTasks(self, taskContentRequest: dict[str, Any]) -> list[dict[str, Any]]:
        """The original's other name of the split: define this or `splitTasksContent`; it gets
        the task's content."""
        return await self.splitTasksContent(taskContentRequest)

    async def executeSubtask(self, subTaskContent: dict[str, Any]) -> Union[dict[str, Any], list[Any]]:
        """Runs one subtask; its result (a dict or a list) is stored with the task."""
        raise NotImplementedError(f"{type(self).__name__} must define `async def executeSubtask(self, subTaskContent)`")

    async def execute(self, taskData: dict[str, Any]) -> Union[dict[str, Any], list[Any]]:
        """The original's other name of a subtask's run: define this or `executeSubtask`; it
        gets the subtask's content."""
        return await self.executeSubtask(taskData)

    def sendToMonitoring(self, points: Union[CustomMonitoringPoint, Iterable[CustomMonitoringPoint]]) -> None:
        """Writes one `CustomMonitoringPoint` or several (see luna_lambda_tools.monitoring)."""
        send_points(points, self.lambdaId)

    def createSubTaskError(self, subTaskError: Any) -> UserTaskLambdaException:
        """The error that fails the current subtask with `subTaskError` (its text): raise it."""
        return UserTaskLambdaException(str(subTaskError))

    def createErrors(self, taskId: str, subTaskId: Any, taskType: Any, *errors: Any) -> UserTaskLambdaException:
        """One error for several problems of a subtask, naming the task and subtask: raise it
        to fail the subtask with all of them."""
        texts = "; ".join(str(e) for e in errors) or "failed"
        return UserTaskLambdaException(f"task {taskId} subtask {subTaskId} ({taskType}): {texts}")
