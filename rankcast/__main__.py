"""Run the command line as `python -m rankcast`."""

import sys

from rankcast.cli import main

sys.exit(main())
