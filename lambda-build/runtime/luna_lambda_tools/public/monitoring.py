"""`monitorLastActivity` (mark background activity) and `CustomMonitoringPoint` (a point of the
lambda's own series, sent with `request.sendToMonitoring`); see luna_lambda_tools.monitoring."""

from ..monitoring import CustomMonitoringPoint, DataForMonitoring, monitorLastActivity

__all__ = ["CustomMonitoringPoint", "DataForMonitoring", "monitorLastActivity"]
