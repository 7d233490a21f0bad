"""``python -m camlens.cli``: the ``camlens`` command."""

from camlens.cli import main

raise SystemExit(main())
