"""Base pydantic schemas (`schemas.base`)."""
