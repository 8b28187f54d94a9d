"""`python -m metajax` runs the command-line trainer."""
import sys

from metajax.main import main

sys.exit(main())
