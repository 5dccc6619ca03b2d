"""`python -m pgcode` runs the CLI."""

import sys

from pgcode.cli import main

sys.exit(main())
