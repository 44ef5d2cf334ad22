"""`python -m exoclaw …` is the `exoclaw` command."""

import sys

from exoclaw.cli import main

sys.exit(main())
