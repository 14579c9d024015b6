"""`monitorLastActivity`: mark background activity (see luna_lambda_tools.monitoring)."""

from ..monitoring import monitorLastActivity

__all__ = ["monitorLastActivity"]
