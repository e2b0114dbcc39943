"""``python -m nondiff`` runs the ``nondiff`` command."""

import sys

from nondiff.cli import main

sys.exit(main())
