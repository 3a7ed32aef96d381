import sys

from arbiter.tap import main

sys.exit(main())
