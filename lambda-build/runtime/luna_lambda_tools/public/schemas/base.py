"""`BaseSchema`: a pydantic model accepting camelCase names and snake_case aliases, with `asDict()`."""

from ..handlers.schemas import BaseSchema

__all__ = ["BaseSchema"]
