"""A handlers lambda: luna-handlers sends it event sources. `request.data` is the body parsed
into `EventSourceSchema` (a body that does not match answers 400 naming the field);
`request.json` is the body as it came."""

from luna_lambda_tools import HandlersLambdaRequest, logger


async def main(request: HandlersLambdaRequest) -> dict:
    data = request.data
    logger.info("handler %s: %d source(s): %s", request.handlerId, len(data.sources), [s.filename for s in data.sources])
    return {
        "handler_id": request.handlerId,
        "sources": len(data.sources),
        "aggregate": data.aggregateAttributes,
        "filenames": [s.filename for s in data.sources],
    }
