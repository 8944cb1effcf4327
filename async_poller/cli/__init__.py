"""The command line: one module per command, each adding its parser and running it.

Output, progress and the live display live only here; everything else is the library.
"""

from .app import main

__all__ = ["main"]
