"""``python -m hmvnet``: the same as the ``hmvnet`` command."""

import sys

from hmvnet.app.cli import main

sys.exit(main())
