"""`Handlers`: client of a LUNA service; not configured on this platform (see the package docs)."""

from ._unconfigured import unconfigured

Handlers = unconfigured("Handlers", "LUNA_HANDLERS_ADDRESS")

__all__ = ["Handlers"]
