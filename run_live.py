#!/usr/bin/env python3
"""Live gym-exercise analyzer. ``python run_live.py --help``."""

import sys

from realtime.cli import main

if __name__ == "__main__":
    sys.exit(main())
