"""``python -m app.cli``: the ``paddock`` command."""

from app.cli import main

raise SystemExit(main())
