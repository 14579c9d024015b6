"""Run a lambda locally, as the original documents it. In a folder with `lambda_main.py`:

    # run.py
    from luna_lambda_tools.public.run import run
    run(lambdaType="standalone")

`python run.py` serves the lambda on `LAMBDA_PORT` (default 8000) exactly as a deployed replica
does (the other `LAMBDA_*` settings of luna_lambda_tools.config apply too).
"""

from .._local import run_lambda

__all__ = ["run"]


def run(lambdaType: str = "standalone") -> None:
    """Serves `lambda_main.py` of the current folder; returns only when the server stops."""
    run_lambda(lambdaType, debug=False)
