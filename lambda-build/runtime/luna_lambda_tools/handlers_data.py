"""`request.data` of a handlers lambda: the decoded body parsed into `EventSourceSchema`.
Imported on the first use of `request.data`, so that a lambda that never reads it does not
load pydantic."""

from pydantic import ValidationError

from .exceptions import BadRequest
from .handlers_schemas import SOURCE_TAGS, EventSourceSchema
from .schemas import describe_errors


def event_sources(body):
    """`body` (the decoded JSON or MessagePack) as an `EventSourceSchema`; a mismatch raises
    BadRequest (400, 12001) naming each wrong field by its path."""
    try:
        return EventSourceSchema.model_validate(body)
    except ValidationError as e:
        detail = f"request data does not match EventSourceSchema: {describe_errors(e, SOURCE_TAGS)}"
        raise BadRequest(12001, "Bad input data", detail) from None
