"""The platform's calls into a tasks lambda: `POST /tasks/split` and `POST /tasks/subtask`.

Both take `{"task_id", "account_id", "content"}` (`/tasks/subtask` also `"subtask"`: its index)
and answer `{"subtasks": [...]}` / `{"result": ...}`. A `UserTaskLambdaException` (or a
`UserException`) answers 422: the platform fails that call for good. Any other exception answers
500 and the platform tries again, up to its `[tasks] max_attempts`.
"""

import copy
import traceback

import orjson

from .config import lambdaConfig
from .exceptions import UserException, UserTaskLambdaException, error_body
from .logger import logger
from .user_handlers import TASK_ROUTES

SPLIT, SUBTASK = TASK_ROUTES


def _error(status, detail):
    return status, error_body(42004, "Lambda exception", detail)


class TaskRoutes:
    paths = TASK_ROUTES

    def __init__(self, cls):
        self.cls = cls
        self.proto = None

    async def start(self):
        self.proto = self.cls()
        await self.proto.start(lambdaConfig.lambdaId)

    async def stop(self):
        if self.proto is not None:
            await self.proto.onShutdown()

    async def call(self, path, call, rid):
        if not isinstance(call, dict) or not isinstance(call.get("content"), dict):
            return 400, error_body(12001, "Bad JSON", f"{path} takes {{\"task_id\", \"account_id\", \"content\": {{...}}}}")
        task = copy.copy(self.proto if self.proto is not None else self.cls())
        task.taskId = str(call.get("task_id") or "")
        task.accountId = str(call.get("account_id") or "")
        where = f"task {task.taskId}" + (f" subtask {call.get('subtask')}" if path == SUBTASK else " split")
        try:
            if path == SPLIT:
                result = await task.splitTask2SubTasks(call["content"])
            else:
                result = await task.execute(call["content"])
        except (UserTaskLambdaException, UserException) as e:
            logger.warning("%s failed: %s", where, e.errorText)
            return _error(422, e.errorText)
        except Exception as e:  # noqa: BLE001 - user code may raise anything
            logger.error("%s raised:\n%s", where, traceback.format_exc())
            return _error(500, f"{type(e).__name__}: {e}")
        if path == SPLIT:
            if not isinstance(result, list) or not all(isinstance(c, dict) for c in result):
                return _error(422, f"splitTasksContent returned {type(result).__name__}; it must return a list of dicts")
            key = "subtasks"
        else:
            if not isinstance(result, (dict, list)):
                return _error(422, f"executeSubtask returned {type(result).__name__}; it must return a dict or a list")
            key = "result"
        try:
            return 200, orjson.dumps({key: result}, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY)
        except TypeError as e:
            return _error(422, f"the value returned for {where} is not JSON-serializable: {e}")
