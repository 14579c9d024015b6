"""Pydantic models of the body luna-handlers sends a handlers lambda:

    data = request.getRequestData(EventSourceSchema)
    for source in data.sources: ...

Field names are the original's camelCase; the wire's snake_case (`aggregate_attributes`,
`use_exif_info`, `source_data`) is accepted too. Needs pydantic (add it to requirements.txt).
"""

try:
    from pydantic import BaseModel, ConfigDict, Field
except ImportError as e:  # pragma: no cover - exercised in a venv without pydantic
    raise ImportError(
        "luna_lambda_tools.public.handlers.schemas needs pydantic; add `pydantic` to the lambda's requirements.txt"
    ) from e

from typing import Any, Optional

__all__ = ["BaseSchema", "EventSource", "EventSourceSchema", "SourceData"]


class BaseSchema(BaseModel):
    """Accepts camelCase names and their snake_case aliases; `asDict()` gives plain data."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")

    def asDict(self) -> dict:
        return self.model_dump(exclude_none=True)


class SourceData(BaseSchema):
    """User data attached to a source, passed through as it is."""


class EventSource(BaseSchema):
    """One image or set of detections to make an event of."""

    filename: Optional[str] = None
    image: Optional[str] = None
    detections: Optional[list[Any]] = None
    sourceData: Optional[SourceData] = Field(None, alias="source_data")


class EventSourceSchema(BaseSchema):
    """The body of a handlers request."""

    sources: list[EventSource] = Field(min_length=1)
    aggregateAttributes: bool = Field(False, alias="aggregate_attributes")
    useExifInfo: bool = Field(True, alias="use_exif_info")
    sourceData: Optional[SourceData] = Field(None, alias="source_data")
