"""The lambda's logger (stderr, captured by the platform as the replica's log)."""

from ..logger import logger

__all__ = ["logger"]
