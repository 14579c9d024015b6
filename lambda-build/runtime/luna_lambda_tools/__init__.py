"""luna_lambda_tools: the runtime API a lambda's code uses.

    from luna_lambda_tools import StandaloneLambdaRequest, HandlersLambdaRequest, UserException, logger
"""

from .config import lambdaConfig
from .exceptions import LunaServicesNotConfigured, UserException
from .logger import logger
from .request import HandlersLambdaRequest, StandaloneLambdaRequest

__all__ = [
    "HandlersLambdaRequest",
    "LunaServicesNotConfigured",
    "StandaloneLambdaRequest",
    "UserException",
    "lambdaConfig",
    "logger",
]
