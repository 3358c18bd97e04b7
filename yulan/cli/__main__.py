"""`python -m yulan.cli ARGS` is `yulan ARGS`."""

import sys

from yulan.cli import main

sys.exit(main())
