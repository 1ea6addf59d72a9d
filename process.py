#!/usr/bin/env python
"""Grand-challenge entry point: read one case from /input, write the outputs to /output.

    python process.py [--input DIR] [--output DIR] [--outputs segmentation|survival|both|hecktor2026]

The outputs profile can also be set with the environment variable HMVNET_OUTPUTS, and the weights folder with
HMVNET_WEIGHTS (default: /opt/ml/model when it holds weights, else weights/ next to this file).
"""

import os
import sys

# matplotlib (pulled in by some dependencies) must not write into $HOME/.config or $HOME/.cache of the host
os.environ.setdefault("MPLCONFIGDIR", "/tmp/hmvnet-matplotlib")

from hmvnet.app.cli import configure_logging, run_cli
from hmvnet.app.pipeline import cli_main

if __name__ == "__main__":
    configure_logging()
    sys.exit(run_cli(cli_main, sys.argv[1:]))
