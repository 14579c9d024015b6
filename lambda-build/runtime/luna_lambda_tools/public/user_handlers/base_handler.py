"""`LambdaUserHandler`: the base class of additional routes (see luna_lambda_tools.user_handlers)."""

from ...user_handlers import LambdaUserHandler

__all__ = ["LambdaUserHandler"]
