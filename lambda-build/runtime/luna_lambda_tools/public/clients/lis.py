"""`LIS`: client of a LUNA service; not configured on this platform (see the package docs)."""

from ._unconfigured import unconfigured

LIS = unconfigured("LIS", "LUNA_IMAGE_STORE_ADDRESS")

__all__ = ["LIS"]
