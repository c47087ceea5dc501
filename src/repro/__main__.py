"""`python -m repro`: the command line of repro.cli."""
import sys

from .cli import main

sys.exit(main())
