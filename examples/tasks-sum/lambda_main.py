"""A tasks lambda: sums 0..n-1 by splitting the range into chunks that run as subtasks across
the lambda's replicas. Start it with POST /1/tasks {"description": "...", "content":
{"lambda_id": "<id>", "n": 1000, "chunk": 100}}; GET /1/tasks/{task_id}/result has each chunk's
sum in order."""

from luna_lambda_tools.public.exceptions import UserTaskLambdaException
from luna_lambda_tools.public.tasks import BaseLambdaTask


class SumTask(BaseLambdaTask):
    async def splitTasksContent(self, content: dict) -> list[dict]:
        n, chunk = content.get("n"), content.get("chunk", 100)
        if not isinstance(n, int) or not isinstance(chunk, int) or n < 0 or chunk < 1:
            raise UserTaskLambdaException("content needs integers 'n' >= 0 and 'chunk' >= 1")
        return [{"from": a, "to": min(a + chunk, n)} for a in range(0, n, chunk)]

    async def executeSubtask(self, subTaskContent: dict) -> dict:
        a, b = subTaskContent["from"], subTaskContent["to"]
        self.logger.info("task %s: summing %d..%d", self.taskId, a, b)
        return {"from": a, "to": b, "sum": sum(range(a, b))}
