"""`python -m embellama`: the same command as `embellama`, for environments without the script."""

import sys

from embellama.cli.main import main

sys.exit(main())
