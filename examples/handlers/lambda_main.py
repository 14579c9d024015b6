"""A handlers lambda: luna-handlers sends it event data; it answers with a summary."""

from luna_lambda_tools import HandlersLambdaRequest, UserException


async def main(request: HandlersLambdaRequest) -> dict:
    data = request.data
    if not isinstance(data, dict) or "sources" not in data:
        raise UserException(400, "expected a JSON object with 'sources'")
    return {"handler_id": request.handlerId, "sources": len(data["sources"])}
