"""The smallest useful lambda: echoes the JSON body it receives."""

from luna_lambda_tools import StandaloneLambdaRequest


async def main(request: StandaloneLambdaRequest) -> dict:
    return {"echo": request.json}
