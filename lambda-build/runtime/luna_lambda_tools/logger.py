"""The lambda logger: `from luna_lambda_tools import logger`. Writes to stderr, which the
platform captures as the replica's runtime log."""

import logging
import os
import sys

logger = logging.getLogger("luna_lambda")

if not logger.handlers:
    _handler = logging.StreamHandler(sys.stderr)
    _handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"))
    logger.addHandler(_handler)
    logger.setLevel(os.environ.get("LAMBDA_LOG_LEVEL", "INFO").upper())
    logger.propagate = False
