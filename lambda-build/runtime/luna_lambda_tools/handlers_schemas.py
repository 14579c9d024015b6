"""Pydantic models of the body luna-handlers sends a handlers lambda
(`luna_lambda_tools.public.handlers.schemas`). In a handlers lambda `request.data` is the body
parsed into `EventSourceSchema`:

    async def main(request: HandlersLambdaRequest) -> dict:
        for source in request.data.sources:
            logger.info("source %s", source.filename)

Field names are the original's camelCase; the wire's snake_case (`aggregate_attributes`,
`use_exif_info`, `source_data`, `detect_ts`, ...) is accepted too. Each source becomes one of
four classes: with `aggregate_attributes` an `EventSourceAggregated...` (its source data is
the body's `source_data`), without it an `EventSourceNonAggregated...` (each source may carry
its own `source_data`); a source with `detections` is a `...Detections`, any other a
`...RawImage`.
"""

import contextvars
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import Discriminator, Field, Tag, model_validator
from pydantic_core import core_schema

from .schemas import BaseSchema, BoundingBox, Location

__all__ = [
    "Angles",
    "BaseSchema",
    "BodyDetectionData",
    "DetectTs",
    "EventSource",
    "EventSourceAggregated",
    "EventSourceAggregatedDetections",
    "EventSourceAggregatedRawImage",
    "EventSourceBase",
    "EventSourceNonAggregated",
    "EventSourceNonAggregatedDetections",
    "EventSourceNonAggregatedRawImage",
    "EventSourceSchema",
    "FaceDetection",
    "FaceDetectionData",
    "ImageOrigin",
    "RawDetection",
    "RawDetectionsAggregated",
    "RawDetectionsNonAggregated",
    "RawImageAggregated",
    "RawImageNonAggregated",
    "SourceData",
]


class DetectTs(float):
    """A user's timestamp of a detection relative to something (the start of a video, say):
    seconds, from 0 to 158731466399.999. Dumped as a plain float."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(
            cls,
            core_schema.float_schema(ge=0.0, le=158731466399.999),
            serialization=core_schema.plain_serializer_function_ser_schema(float),
        )


class ImageOrigin(BaseSchema):
    """Where the source image came from: its body (or a URL) and the body's meta."""

    body: Union[bytes, str]
    bodyMeta: Optional[dict[str, Any]] = None


class SourceData(BaseSchema):
    """What the caller tells about the source, passed on to the events."""

    source: Optional[str] = None
    streamId: Optional[str] = None
    tags: Optional[list[str]] = None
    userData: str = ""
    externalId: str = ""
    trackId: Optional[str] = None
    meta: Optional[dict[str, Any]] = None
    eventTime: Optional[str] = None
    eventEndTime: Optional[str] = None
    location: Optional[Location] = None


class Angles(BaseSchema):
    """Head pose, in degrees."""

    pitch: float
    roll: float
    yaw: float


class FaceDetectionData(BaseSchema):
    """A face found on a raw image beforehand: its box (and the box on the original image)."""

    boundingBox: BoundingBox
    originBoundingBox: Optional[BoundingBox] = None
    angles: Optional[Angles] = None
    score: Optional[float] = None


class BodyDetectionData(BaseSchema):
    """A body found on a raw image beforehand."""

    boundingBox: BoundingBox
    originBoundingBox: Optional[BoundingBox] = None


class RawDetection(BaseSchema):
    """A detection sent as a warped image."""

    warp: Union[bytes, str]
    boundingBox: Optional[BoundingBox] = None
    meta: Optional[dict[str, Any]] = None


class FaceDetection(RawDetection):
    """A face detection sent as a warp, with its pose and score."""

    angles: Optional[Angles] = None
    score: Optional[float] = None
    originBoundingBox: Optional[BoundingBox] = None


class RawDetectionsAggregated(BaseSchema):
    """The face and the body of one person, for an aggregated event (at least one of them)."""

    faceDetection: Optional[FaceDetection] = None
    bodyDetection: Optional[RawDetection] = None

    @model_validator(mode="after")
    def _some_detection(self) -> "RawDetectionsAggregated":
        if self.faceDetection is None and self.bodyDetection is None:
            raise ValueError("a detection needs face_detection, body_detection or both")
        return self


class RawDetectionsNonAggregated(RawDetectionsAggregated):
    """The face and the body of one person."""


FaceBox = Union[FaceDetectionData, BoundingBox]
BodyBox = Union[BodyDetectionData, BoundingBox]


class RawImageAggregated(BaseSchema):
    """An image and the boxes already found on it."""

    body: Union[bytes, str]
    faceBoundingBoxes: Optional[list[FaceBox]] = None
    bodyBoundingBoxes: Optional[list[BodyBox]] = None
    meta: Optional[dict[str, Any]] = None


class RawImageNonAggregated(RawImageAggregated):
    """An image and the boxes already found on it."""


class EventSourceBase(BaseSchema):
    """What every source has."""

    filename: Optional[str] = None
    detectTime: Optional[str] = None
    detectTs: Optional[DetectTs] = None
    imageOrigin: Optional[Union[ImageOrigin, str]] = None


class EventSourceAggregated(EventSourceBase):
    """A source of an aggregated event (`aggregate_attributes`): no source data of its own."""


class EventSourceNonAggregated(EventSourceBase):
    """A source that makes events of its own, with its own source data."""

    sourceData: Optional[SourceData] = None


class _RawImage(BaseSchema):
    # source type: 0 an image, 1 a face warp, 2 a body warp
    body: Optional[Union[bytes, str]] = None
    bodyMeta: Optional[dict[str, Any]] = None
    sourceType: Literal[0, 1, 2] = 0
    faceBoundingBoxes: Optional[list[FaceBox]] = None
    bodyBoundingBoxes: Optional[list[BodyBox]] = None


class EventSourceAggregatedRawImage(_RawImage, EventSourceAggregated):
    """An image (its body, or its origin) of an aggregated event."""


class EventSourceNonAggregatedRawImage(_RawImage, EventSourceNonAggregated):
    """An image (its body, or its origin) that makes its own events."""


class EventSourceAggregatedDetections(EventSourceAggregated):
    """Detections (warps) of an aggregated event."""

    detections: list[RawDetectionsAggregated] = Field(min_length=1)


class EventSourceNonAggregatedDetections(EventSourceNonAggregated):
    """Detections (warps) that make their own events."""

    detections: list[RawDetectionsNonAggregated] = Field(min_length=1)


#: The original's name of a non-aggregated image source.
EventSource = EventSourceNonAggregatedRawImage

_SOURCE_CLASSES = (
    EventSourceAggregatedRawImage,
    EventSourceAggregatedDetections,
    EventSourceNonAggregatedRawImage,
    EventSourceNonAggregatedDetections,
)
#: Tags of the sources' union: left out of the paths in error messages.
SOURCE_TAGS = tuple(c.__name__ for c in _SOURCE_CLASSES)
# Whether the body being validated aggregates its sources; set by EventSourceSchema's
# discriminateSources, read by discriminateSourceType (validation is synchronous).
_aggregating = contextvars.ContextVar("luna_lambda_aggregating", default=False)


def discriminateSourceType(source: Any) -> Optional[str]:
    """The class (by name) a source validates as: aggregated or not as the body says, with
    `detections` a `...Detections`, else a `...RawImage`."""
    if isinstance(source, _SOURCE_CLASSES):
        return type(source).__name__
    if not isinstance(source, dict):
        return None
    kind = "Detections" if "detections" in source else "RawImage"
    return f"EventSource{'Aggregated' if _aggregating.get() else 'NonAggregated'}{kind}"


AnySource = Annotated[
    Union[
        Annotated[EventSourceAggregatedRawImage, Tag("EventSourceAggregatedRawImage")],
        Annotated[EventSourceAggregatedDetections, Tag("EventSourceAggregatedDetections")],
        Annotated[EventSourceNonAggregatedRawImage, Tag("EventSourceNonAggregatedRawImage")],
        Annotated[EventSourceNonAggregatedDetections, Tag("EventSourceNonAggregatedDetections")],
    ],
    Discriminator(
        discriminateSourceType,
        custom_error_type="source",
        custom_error_message="a source must be an object: an image (body, image_origin, ...) or detections",
    ),
]


class EventSourceSchema(BaseSchema):
    """The body of a handlers request."""

    sources: list[AnySource] = Field(min_length=1)
    aggregateAttributes: bool = False
    useExifInfo: bool = True
    sourceData: Optional[SourceData] = None

    @model_validator(mode="wrap")
    @classmethod
    def discriminateSources(cls, data: Any, handler: Any) -> "EventSourceSchema":
        """Validates the sources as aggregated ones when the body says `aggregate_attributes`."""
        flag = False
        if isinstance(data, dict):
            flag = bool(data.get("aggregate_attributes", data.get("aggregateAttributes", False)))
        token = _aggregating.set(flag)
        try:
            return handler(data)
        finally:
            _aggregating.reset(token)
