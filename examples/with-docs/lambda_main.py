"""A lambda that ships its own documentation (GET /docs)."""

from luna_lambda_tools import StandaloneLambdaRequest


async def main(request: StandaloneLambdaRequest) -> dict:
    name = request.args.get("name", "world")
    return {"greeting": f"hello, {name}"}
