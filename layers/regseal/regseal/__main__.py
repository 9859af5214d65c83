"""``python -m regseal``: the same as the ``regseal`` command."""

import sys

from regseal.cli import main

sys.exit(main())
