"""luna_lambda_tools: the runtime API a lambda's code uses.

    from luna_lambda_tools import StandaloneLambdaRequest, HandlersLambdaRequest, UserException, logger

The same names, and more, are importable by the original's documented module paths under
`luna_lambda_tools.public` (e.g. `luna_lambda_tools.public.metrics.user_metrics.Counter`).
"""

from .config import lambdaConfig
from .exceptions import LunaServicesNotConfigured, UserException, UserTaskLambdaException
from .logger import logger
from .metrics import Counter, Gauge, Histogram, Summary
from .monitoring import monitorLastActivity
from .request import HandlersLambdaRequest, StandaloneLambdaRequest
from .tasks import BaseLambdaTask
from .user_handlers import LambdaUserHandler

__all__ = [
    "BaseLambdaTask",
    "Counter",
    "Gauge",
    "HandlersLambdaRequest",
    "Histogram",
    "LambdaUserHandler",
    "LunaServicesNotConfigured",
    "StandaloneLambdaRequest",
    "Summary",
    "UserException",
    "UserTaskLambdaException",
    "lambdaConfig",
    "logger",
    "monitorLastActivity",
]
