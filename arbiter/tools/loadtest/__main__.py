"""``python -m arbiter.tools.loadtest``: the ``arbiter-loadtest`` command."""

import sys

from arbiter.tools.loadtest.cli import main

sys.exit(main())
