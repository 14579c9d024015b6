"""A handlers lambda fed MessagePack, as luna-handlers sends it (`Content-Type:
application/msgpack`): `request.json` is the decoded body as it came, whichever encoding arrived
(`request.data` would parse it into `EventSourceSchema`)."""

from luna_lambda_tools.public.exceptions import UserException
from luna_lambda_tools.public.handlers.handlers_request import HandlersLambdaRequest


async def main(request: HandlersLambdaRequest) -> dict:
    data = request.json
    if not isinstance(data, dict) or not isinstance(data.get("sources"), list):
        raise UserException(400, "expected an object with a 'sources' list")
    sizes = [len(s.get("image", b"")) for s in data["sources"] if isinstance(s, dict)]
    return {
        "handler_id": request.handlerId,
        "content_type": request.headers.get("content-type"),
        "sources": len(data["sources"]),
        "image_bytes": sum(sizes),
    }
