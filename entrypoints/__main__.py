"""`python -m entrypoints serve|migrate`."""

import sys

from entrypoints.cli import main

sys.exit(main())
