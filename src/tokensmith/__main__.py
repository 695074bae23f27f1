"""``python -m tokensmith``: the command line (cached-token fast path first, as the console script)."""

import sys

from .cli.fast import main

sys.exit(main())
