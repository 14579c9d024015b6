"""Additional routes (`base_handler.LambdaUserHandler`)."""

from .base_handler import LambdaUserHandler

__all__ = ["LambdaUserHandler"]
