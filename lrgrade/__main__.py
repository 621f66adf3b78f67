"""``python -m lrgrade ASSIGNMENT [options]``: see :mod:`lrgrade.cli`."""

from lrgrade.cli import main

raise SystemExit(main())
