"""`python -m hip3_trio`: see `hip3_trio.cli`."""

import sys

from hip3_trio.cli import main

sys.exit(main())
