"""``python -m dymos`` — the same as the ``dymos`` command."""

from dymos.cli import main

raise SystemExit(main())
