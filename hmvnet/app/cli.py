"""The ``hmvnet`` command: one subcommand per pipeline stage.

Each subcommand lives in the module of its stage as ``cli_main(argv) -> int``; this file only dispatches, and
imports a stage module only when its subcommand runs (``hmvnet --help`` stays fast).
"""

from __future__ import annotations

import importlib
import logging
import sys

from hmvnet.errors import HMVNetError

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "synth": (
        "hmvnet.synthetic.cohort",
        "generate a synthetic PET/CT phantom cohort (HECKTOR training layout)",
    ),
    "evaluate": (
        "hmvnet.evaluation.evaluate",
        "challenge metrics of predicted masks (and risks) against the truth",
    ),
    "train-seg": (
        "hmvnet.segmentation.training",
        "train the HM-VNet segmentation network on the HECKTOR layout",
    ),
    "train-survival": ("hmvnet.survival.training", "train the RFS fusion network and bagged ICARE"),
    "predict": ("hmvnet.app.batch", "batch inference over a folder of cases (models loaded once)"),
    "process": ("hmvnet.app.pipeline", "one case in the grand-challenge layout (same as process.py)"),
    "serve": ("hmvnet.app.serve", "HTTP invoke service: GET /health, POST /invoke"),
}


def _usage() -> str:
    lines = ["usage: hmvnet <command> [options]", "", "commands:"]
    lines += [f"  {name:<15} {help_}" for name, (_, help_) in SUBCOMMANDS.items()]
    lines += ["", "Run `hmvnet <command> --help` for the options of one command."]
    return "\n".join(lines)


def run_cli(entry, argv: list[str]) -> int:
    """Run ``entry(argv)``, turning an :class:`HMVNetError` into a one-line message and exit code 2."""
    try:
        return int(entry(argv) or 0)
    except HMVNetError as exc:
        if logging.getLogger().hasHandlers():
            logging.getLogger("hmvnet").error("%s", exc)
        else:
            print(f"error: {exc}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"}:
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"error: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    module = importlib.import_module(SUBCOMMANDS[name][0])
    return run_cli(module.cli_main, rest)


if __name__ == "__main__":
    sys.exit(main())
