"""`LVA`: client of a LUNA service; not configured on this platform (see the package docs)."""

from ._unconfigured import unconfigured

LVA = unconfigured("LVA", "LUNA_VIDEO_AGENT_ADDRESS")

__all__ = ["LVA"]
