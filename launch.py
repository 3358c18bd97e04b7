#!/usr/bin/env python
"""`python launch.py ARGS` in a checkout is `yulan launch ARGS` (see `python launch.py --help`)."""

import sys

from yulan.cli.launch import main

if __name__ == "__main__":
    sys.exit(main())
