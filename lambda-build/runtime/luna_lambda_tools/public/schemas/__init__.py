"""Base pydantic schema (`schemas.base.BaseSchema`); needs pydantic."""
