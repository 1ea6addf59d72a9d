#!/usr/bin/env python
"""The seed README's `python train.py`: trains the segmentation network (same as `hmvnet train-seg`).

    python train.py --data DATA --out weights/segmentation [--config configs/demo_segmentation.json] [--fold 0 1 2 3 4]

The seed README mentioned a config.xml; this implementation takes a JSON configuration (see configs/).
"""

import logging
import sys

from hmvnet.app.cli import run_cli
from hmvnet.segmentation.training import cli_main

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(run_cli(cli_main, sys.argv[1:]))
