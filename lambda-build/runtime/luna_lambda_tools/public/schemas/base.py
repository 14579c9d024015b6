"""Base pydantic schemas: `BaseSchema` (camelCase names with snake_case aliases, `asDict()`),
`BoundingBox`, `GeoPosition`, `Location` (see luna_lambda_tools.schemas)."""

from ...schemas import BaseSchema, BoundingBox, GeoPosition, Location

__all__ = ["BaseSchema", "BoundingBox", "GeoPosition", "Location"]
