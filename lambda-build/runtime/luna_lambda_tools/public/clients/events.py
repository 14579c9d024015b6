"""`Events`: client of a LUNA service; not configured on this platform (see the package docs)."""

from ._unconfigured import unconfigured

Events = unconfigured("Events", "LUNA_EVENTS_ADDRESS")

__all__ = ["Events"]
