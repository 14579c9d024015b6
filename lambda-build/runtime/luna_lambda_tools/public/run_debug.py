"""Like `luna_lambda_tools.public.run`, for a debugger: one process on the standard asyncio loop,
debug logging. `from luna_lambda_tools.public.run_debug import run; run(lambdaType="standalone")`.
"""

from .._local import run_lambda

__all__ = ["run"]


def run(lambdaType: str = "standalone") -> None:
    """Serves `lambda_main.py` of the current folder in one debuggable process."""
    run_lambda(lambdaType, debug=True)
