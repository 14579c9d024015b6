"""Uses a package from requirements.txt."""

import six

from luna_lambda_tools import StandaloneLambdaRequest


async def main(request: StandaloneLambdaRequest) -> dict:
    return {"six_version": six.__version__, "is_py3": six.PY3}
