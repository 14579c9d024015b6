"""Entry point of every lambda: serves lambda_main.main over HTTP (see luna_lambda_tools.server).

This file and the luna_lambda_tools package are added by the platform to every build; an
archive's own copies are replaced.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from luna_lambda_tools.server import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
