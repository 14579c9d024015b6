"""`lambdaConfig`: the settings the platform hands this lambda (see luna_lambda_tools.config)."""

from ..config import LambdaConfig, lambdaConfig

__all__ = ["LambdaConfig", "lambdaConfig"]
