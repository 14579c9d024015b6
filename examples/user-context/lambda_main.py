"""Keeps state across requests with UserCtx: set up in onStart, released in onShutdown."""

from luna_lambda_tools import StandaloneLambdaRequest, logger


class UserCtx:
    async def onStart(self):
        self.counter = 0
        self.greeting = "ready"
        logger.info("user context started")

    async def onShutdown(self):
        logger.info("user context stopped after %d requests", self.counter)


async def main(request: StandaloneLambdaRequest) -> dict:
    ctx = request.userCtx
    ctx.counter += 1
    return {"greeting": ctx.greeting, "count": ctx.counter, "config": request.config.userConfig}
