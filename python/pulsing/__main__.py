"""`python -m pulsing`: the `pulsing` command."""

import sys

from pulsing.cli import main

sys.exit(main())
