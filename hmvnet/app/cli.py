"""The ``hmvnet`` command: one subcommand per pipeline stage.

Each subcommand lives in the module of its stage as ``cli_main(argv) -> int``; this file only dispatches, and
imports a stage module only when its subcommand runs (``hmvnet --help`` stays fast).
"""

from __future__ import annotations

import importlib
import logging
import sys

from hmvnet import __version__
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
    "train-staging": (
        "hmvnet.staging.training",
        "fit the T/N stage classifier; compare it out of fold with the 7th-edition rule",
    ),
    "train-survival": ("hmvnet.survival.training", "train the RFS fusion network and bagged ICARE"),
    "predict": ("hmvnet.app.batch", "batch inference over a folder of cases (models loaded once)"),
    "process": ("hmvnet.app.pipeline", "one case in the grand-challenge layout (same as process.py)"),
    "serve": ("hmvnet.app.serve", "HTTP invoke service: GET /health, POST /invoke"),
    "weights": ("hmvnet.app.weights_cli", "where weights are looked for; verify their checksums"),
}
QUIET_LOGGERS = ("numexpr", "matplotlib", "PIL", "h5py")
"""Third-party loggers kept at WARNING (numexpr announces its thread count at INFO)."""


def _usage() -> str:
    lines = ["usage: hmvnet <command> [options]", "", "commands:"]
    lines += [f"  {name:<15} {help_}" for name, (_, help_) in SUBCOMMANDS.items()]
    lines += ["", "options:", "  -h, --help       this message", "  --version        the hmvnet version"]
    lines += ["", "Run 'hmvnet <command> --help' for the options of one command."]
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


def configure_logging(level: int = logging.INFO) -> None:
    """The one log format (each case's lines carry its id, see :mod:`hmvnet.app.case_log`); third-party INFO
    noise silenced."""
    from hmvnet.app.case_log import install_case_filter

    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(case_prefix)s%(message)s")
    install_case_filter()
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"}:
        print(_usage())
        return 0
    if argv[0] in {"-V", "--version"}:
        print(f"hmvnet {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"error: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    from hmvnet.app.parsers import PARSERS

    PARSERS[name]().parse_args(rest)  # --help and usage errors answer here, before the heavy imports
    configure_logging()
    module = importlib.import_module(SUBCOMMANDS[name][0])
    return run_cli(module.cli_main, rest)


if __name__ == "__main__":
    sys.exit(main())
