"""`Faces`: client of a LUNA service; not configured on this platform (see the package docs)."""

from ._unconfigured import unconfigured

Faces = unconfigured("Faces", "LUNA_FACES_ADDRESS")

__all__ = ["Faces"]
