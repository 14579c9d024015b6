"""`Sender`: client of a LUNA service; not configured on this platform (see the package docs)."""

from ._unconfigured import unconfigured

Sender = unconfigured("Sender", "LUNA_SENDER_ADDRESS")

__all__ = ["Sender"]
