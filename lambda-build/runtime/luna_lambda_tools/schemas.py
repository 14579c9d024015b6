"""Base pydantic schemas (`luna_lambda_tools.public.schemas.base`): `BaseSchema` and the shapes
the handlers schemas share (`BoundingBox`, `GeoPosition`, `Location`).

Field names are the original's camelCase; each also takes its snake_case alias, which is what
the wire carries (`houseNumber` / `house_number`). Unknown fields are refused.
"""

from typing import Any, Optional

try:
    from pydantic import BaseModel, ConfigDict, ValidationError
    from pydantic.alias_generators import to_snake
except ImportError as e:  # pragma: no cover - exercised in a venv without pydantic
    raise ImportError(
        "luna_lambda_tools schemas need pydantic, which the runtime's requirements pin: the base "
        "image predates it (rebuild it with scripts/base-images/build) or the environment lacks "
        "lambda-build/runtime/requirements.txt; adding pydantic to the lambda's requirements.txt works too"
    ) from e

__all__ = ["BaseSchema", "BoundingBox", "GeoPosition", "Location", "describe_errors"]


class BaseSchema(BaseModel):
    """Takes camelCase names and their snake_case aliases; `asDict()` gives plain data with
    snake_case keys, as the original's does."""

    model_config = ConfigDict(alias_generator=to_snake, validate_by_name=True, validate_by_alias=True, extra="forbid")

    def asDict(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)


class GeoPosition(BaseSchema):
    """A point on the globe."""

    latitude: float
    longitude: float


class Location(BaseSchema):
    """Where a source is."""

    geoPosition: Optional[GeoPosition] = None
    street: Optional[str] = None
    houseNumber: Optional[str] = None
    district: Optional[str] = None
    area: Optional[str] = None
    city: Optional[str] = None


class BoundingBox(BaseSchema):
    """A rectangle on an image, in pixels."""

    x: int
    y: int
    width: int
    height: int


def describe_errors(error: ValidationError, skip=(), limit=5) -> str:
    """A pydantic ValidationError as `path: message` items (`sources.0.detect_ts: Input should
    be greater than or equal to 0`), the first `limit` of them; `skip` names path parts to
    leave out (a tagged union's tags)."""
    parts = []
    for item in error.errors()[:limit]:
        path = ".".join(str(p) for p in item["loc"] if p not in skip) or "(the body)"
        parts.append(f"{path}: {item['msg']}")
    more = error.error_count() - limit
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)
