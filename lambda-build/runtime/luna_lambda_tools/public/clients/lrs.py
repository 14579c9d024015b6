"""`LRS`: client of a LUNA service; not configured on this platform (see the package docs)."""

from ._unconfigured import unconfigured

LRS = unconfigured("LRS", "LUNA_REMOTE_SDK_ADDRESS")

__all__ = ["LRS"]
