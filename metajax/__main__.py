"""`python -m metajax` runs the command-line trainer."""
import sys

from metajax.training import host_memory

host_memory.reexec_with_huge_pages()  # once, before any step runs

from metajax.training.cli import main  # pylint: disable=g-import-not-at-top

sys.exit(main())
