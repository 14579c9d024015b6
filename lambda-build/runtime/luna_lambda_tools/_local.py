"""Serving a lambda from a folder on a developer's machine (`public.run`, `public.run_debug`)."""

import os
import sys

LAMBDA_TYPES = ("standalone", "handlers", "tasks")


def run_lambda(lambdaType, debug):
    if lambdaType not in LAMBDA_TYPES:
        raise SystemExit(f"luna-lambda runtime: lambdaType={lambdaType!r} is not one of {list(LAMBDA_TYPES)}")
    # The lambda's folder: where run.py lives (sys.path[0]) and the working directory.
    here = os.getcwd()
    if here not in sys.path:
        sys.path.insert(0, here)
    os.environ["LAMBDA_TYPE"] = lambdaType
    from .config import lambdaConfig
    from .server import main

    lambdaConfig.lambdaType = lambdaType
    sys.exit(main(debug=debug))
