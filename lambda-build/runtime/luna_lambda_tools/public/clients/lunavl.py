"""`Api`: client of a LUNA service; not configured on this platform (see the package docs)."""

from ._unconfigured import unconfigured

Api = unconfigured("Api", "LUNA_API_ADDRESS")

__all__ = ["Api"]
