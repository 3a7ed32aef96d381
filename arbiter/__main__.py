import sys

from arbiter.app.tap import main

sys.exit(main())
