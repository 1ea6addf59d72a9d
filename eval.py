#!/usr/bin/env python
"""The seed README's `python eval.py`: challenge metrics (same as `hmvnet evaluate`).

python eval.py --pred DIR --gt DIR [--clinical CSV --risks CSV|DIR] [--out results.json] [--per-case CSV]
"""

import logging
import sys

from hmvnet.app.cli import run_cli
from hmvnet.evaluation.evaluate import cli_main

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(run_cli(cli_main, sys.argv[1:]))
