"""The packaged app's entry point: the same ``paddock`` command as a pip install.

Double-clicked, it opens the window; with arguments it is the CLI
(``Paddock --selftest --model M``, ``Paddock chat ...``).  ``freeze_support``
runs first inside ``app.cli.main`` so the engine and extraction child
processes (multiprocessing spawn) start from the frozen executable.
"""

import sys

from app.cli import main

if __name__ == "__main__":
    sys.exit(main())
