"""`LPM`: client of a LUNA service; not configured on this platform (see the package docs)."""

from ._unconfigured import unconfigured

LPM = unconfigured("LPM", "LUNA_PYTHON_MATCHER_ADDRESS")

__all__ = ["LPM"]
