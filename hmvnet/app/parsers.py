"""The argument parsers of every ``hmvnet`` subcommand, buildable without importing torch, MONAI or SimpleITK.

``hmvnet <command> --help`` builds the parser from here and answers before the stage module (and its heavy
imports) loads; each stage's ``cli_main`` parses its arguments with the same parser. Every option's help states
its default (:class:`HelpFormatter`).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

from hmvnet.app.profiles import PROFILES
from hmvnet.errors import InputError

ENV_OUTPUTS = "HMVNET_OUTPUTS"
ENV_WEIGHTS = "HMVNET_WEIGHTS"
OUTPUT_CHOICES = tuple(sorted(PROFILES))
"""The names of the output profiles (the one table: :mod:`hmvnet.app.profiles`)."""
MASK_FORMATS = ("nii.gz", "mha")
SYNTH_SIZES = ("full", "small")
SYNTH_GENERATORS = ("v2", "v1")
""":data:`hmvnet.synthetic.cohort.SIZES` (a test keeps the two equal)."""
DEFAULT_PORT = 4743


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults appended to every option's help (none for flags and options without a default); the description
    and epilog keep their line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        help_ = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "(default" in help_:
            return help_
        return super()._get_help_string(action)


def _parser(prog: str, description: str, epilog: str | None = None) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog=f"hmvnet {prog}", description=description, epilog=epilog, formatter_class=HelpFormatter
    )


def default_outputs() -> str:
    """``$HMVNET_OUTPUTS`` (or ``both``); an unknown value is an :class:`InputError` naming the variable."""
    value = os.environ.get(ENV_OUTPUTS, "both").strip().lower() or "both"
    if value not in OUTPUT_CHOICES:
        raise InputError(f"{ENV_OUTPUTS}={value!r}: expected one of {', '.join(OUTPUT_CHOICES)}")
    return value


def parse_folds(text: str) -> int:
    try:
        fold = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a fold number (0, 1, ...), got {text!r}") from exc
    if fold < 0:
        raise argparse.ArgumentTypeError(f"expected a fold number >= 0, got {fold}")
    return fold


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Weights, device, fold selection and test-time augmentation (as nnU-Net's ``-f`` and ``--disable_tta``)."""
    parser.add_argument(
        "--weights",
        type=Path,
        default=None,
        help=f"weights folder (default: ${ENV_WEIGHTS}, /opt/ml/model, then the shipped weights/; "
        "'hmvnet weights --path' lists them)",
    )
    parser.add_argument("--device", default=None, help="auto (default), cpu or cuda")
    parser.add_argument(
        "-f",
        "--folds",
        type=parse_folds,
        nargs="+",
        default=None,
        help="fold models to ensemble, e.g. -f 0 2 (default: every fold in config.json)",
    )
    tta = parser.add_mutually_exclusive_group()
    tta.add_argument(
        "--disable-tta",
        dest="tta",
        action="store_false",
        default=None,
        help="no mirroring test-time augmentation (default: as config.json's inference.mirror_tta)",
    )
    tta.add_argument("--tta", dest="tta", action="store_true", help="force mirroring test-time augmentation")


def add_case_arguments(parser: argparse.ArgumentParser) -> None:
    """The options shared by ``process.py`` / ``hmvnet process`` and ``hmvnet serve``."""
    parser.add_argument("-i", "--input", type=Path, default=Path("/input"), help="case folder")
    parser.add_argument("-o", "--output", type=Path, default=Path("/output"), help="output folder")
    parser.add_argument(
        "--outputs",
        default=None,
        choices=OUTPUT_CHOICES,
        help=f"which outputs to write (default: ${ENV_OUTPUTS} or 'both')",
    )
    add_model_arguments(parser)


def process_parser() -> argparse.ArgumentParser:
    parser = _parser(
        "process",
        "One case in the grand-challenge layout: read /input, segment (and predict the relapse risk), "
        "write /output.",
    )
    add_case_arguments(parser)
    return parser


def predict_parser() -> argparse.ArgumentParser:
    parser = _parser(
        "predict",
        "Batch inference over a folder of cases, models loaded once; resumable, shardable.",
        "Writes OUT/<case>/<case>.nii.gz, OUT/<case>/result.json, OUT/summary.csv and, with --qc,\n"
        "OUT/<case>/qc.png and OUT/qc.html (see docs/qc.md).",
    )
    parser.add_argument("-i", "--input", type=Path, required=True, help="folder of cases")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--outputs",
        default="both",
        choices=OUTPUT_CHOICES,
        help="outputs profile (hmvnet.app.profiles / README); 'segmentation' skips survival; the profile's JSON "
        "files go beside each case's mask",
    )
    parser.add_argument("--format", dest="mask_format", default="nii.gz", choices=MASK_FORMATS)
    parser.add_argument("--overwrite", action="store_true", help="redo finished cases")
    parser.add_argument("--shard", default=None, help="K/N: every N-th case starting at K (0-based); default from "
                        "SLURM_ARRAY_TASK_ID/COUNT or JOB_COMPLETION_INDEX + HMVNET_SHARD_COUNT")  # fmt: skip
    parser.add_argument("--num-workers", type=int, default=1, help="cases read ahead in background threads")
    parser.add_argument("--qc", action="store_true", help="write QC pictures per case and qc.html")
    parser.add_argument("--dicom-out", default="",
                        help="seg,rtstruct (either or both): OUT/<case>/<case>_seg.dcm / _rtstruct.dcm "
                        "for DICOM input (see docs/batch.md)")  # fmt: skip
    add_model_arguments(parser)
    return parser


def serve_parser() -> argparse.ArgumentParser:
    parser = _parser("serve", "HTTP invoke service: GET /health, POST /invoke (one case per request).")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1; the container passes 0.0.0.0)",
    )
    add_case_arguments(parser)
    return parser


def _float_or_nan(text: str) -> float:
    try:
        return float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a number or 'nan', got {text!r}") from exc


def evaluate_parser() -> argparse.ArgumentParser:
    parser = _parser(
        "evaluate",
        "Challenge metrics: GTVp Dice, GTVn aggregated Dice (mm^3-weighted) and detection F1, Task-1 proxy score, "
        "and the C-index, each with a bootstrap 95% interval. Without --out the JSON goes to stdout. Exit code 1 "
        "when predictions or risks are missing or invalid (scored as empty / as ties). Definitions and file "
        "namings: docs/evaluation.md.",
    )
    parser.add_argument(
        "-i", "--pred", type=Path, help="predicted masks: <id>.nii.gz|.mha, <id>_prediction.*, <id>_pred.*, "
        "<id>/<id>.*, <id>/mask.*, <id>/images/<task>/output.mha",
    )  # fmt: skip
    parser.add_argument("--gt", type=Path, help="truth masks ('Task 1/<id>/<id>.nii.gz' or '<id>.nii.gz')")
    parser.add_argument("--clinical", type=Path, help="HECKTOR Task 2 CSV (PatientID, RFS, Relapse)")
    parser.add_argument(
        "--risks", type=Path, help="CSV with PatientID (or case_id) and Prediction (or risk), or a folder of "
        "<id>/rfs.json",
    )  # fmt: skip
    parser.add_argument(
        "--risk-convention", choices=("risk", "rfs2026"), default="risk",
        help="sign of --risks: 'risk' = higher is earlier relapse (HECKTOR 2025, hmvnet); 'rfs2026' = higher is "
        "longer survival (HECKTOR 2026 rfs.json), negated before scoring (default: risk)",
    )  # fmt: skip
    parser.add_argument(
        "--only-predicted", action="store_true",
        help="score only patients with a prediction row (default: every patient of --clinical, missing = tie)",
    )  # fmt: skip
    parser.add_argument("-o", "--out", type=Path, help="results JSON to write (default: print it to stdout)")
    parser.add_argument("--per-case", type=Path, help="per-case CSV to write (every metric, status, risk)")
    parser.add_argument("--no-hd95", action="store_true", help="skip HD95 (faster)")
    parser.add_argument(
        "--empty-both", type=_float_or_nan, default=1.0,
        help="GTVp Dice of a case where prediction and truth are both empty (default 1.0; 'nan' leaves it out)",
    )  # fmt: skip
    parser.add_argument(
        "--allow-missing",
        action="store_true",
        help="exit 0 even when predictions or risks are missing/invalid",
    )
    parser.add_argument("--strict", action="store_true", help="an invalid prediction is an error (exit 2)")
    parser.add_argument("--n-bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% CIs")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument(
        "--stages",
        type=Path,
        help="CSV with PatientID (or case_id), t_stage, n_stage (2026; needs --clinical)",
    )
    return parser


def synth_parser() -> argparse.ArgumentParser:
    parser = _parser(
        "synth",
        "Synthetic PET/CT head-and-neck phantoms in the HECKTOR 2025 training layout "
        "(or one case in the grand-challenge layout with --gc-case).",
    )
    parser.add_argument("-o", "--out", type=Path, help="output folder (required unless --report)")
    parser.add_argument(
        "--seed", type=int, help="cohort seed (same seed => identical files; required unless --report)"
    )
    parser.add_argument("--cases", type=int, help="number of cases (training layout)")
    parser.add_argument(
        "--start-index", type=int, default=0, help="index of the first case (extends a cohort)"
    )
    parser.add_argument("--size", choices=SYNTH_SIZES, default="full", help="full-resolution or small cases")
    parser.add_argument("--workers", type=int, default=1, help="processes (one case per task)")
    parser.add_argument("--gc-case", action="store_true", help="write ONE case in the grand-challenge layout")
    parser.add_argument(
        "--truth-out", type=Path, help="with --gc-case: folder for label.nii.gz and truth.json"
    )
    parser.add_argument("--format", choices=["nifti", "dicom"], default="nifti",
                        help="dicom: a PACS-like DICOM export tree (--cases studies, default 6; --size small: "
                        "the fast analytic phantom, else the realistic one; see docs/batch.md)")  # fmt: skip
    parser.add_argument(
        "--generator",
        choices=SYNTH_GENERATORS,
        default="v2",
        help="phantom generator (v1: the original phantoms)",
    )
    parser.add_argument(
        "--split",
        choices=("train", "test"),
        default="train",
        help="v2: 'test' adds centres never seen in training",
    )
    parser.add_argument(
        "--report",
        type=Path,
        metavar="DIR",
        help="measure the v2 cohort in DIR against the real-data figures; writes DIR/synth_realism.md",
    )
    return parser


def train_seg_parser() -> argparse.ArgumentParser:
    parser = _parser(
        "train-seg", "Train the HM-VNet segmentation network on the HECKTOR 2025 training layout."
    )
    parser.add_argument(
        "--data", type=Path, required=True, help="HECKTOR 2025 training folder (holding 'Task 1')"
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="output folder: config.json + fold*.safetensors"
    )
    parser.add_argument("--fold", type=int, nargs="+", default=[0], help="fold(s) to train")
    parser.add_argument(
        "--config", type=Path, help="JSON with SegmentationConfig sections and a 'train' section"
    )
    parser.add_argument("--cache", type=Path, default=None, help="preprocessing cache (default: OUT/cache)")
    run = parser.add_mutually_exclusive_group()
    run.add_argument("--resume", action="store_true", help="continue from OUT/foldK/checkpoint_last.pt")
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh in an OUT that already holds a run (replaces it)",
    )
    parser.add_argument(
        "--init-weights",
        type=Path,
        help="start from these weights (e.g. weights/segmentation/fold0.safetensors) with a fresh optimiser and "
        "schedule: fine-tuning; --resume of an existing checkpoint wins",
    )
    parser.add_argument(
        "--val-split",
        type=Path,
        help="split.json of an earlier run: its 'val' cases validate, all other cases train (instead of --fold's)",
    )
    for name, kind in (("epochs", int), ("samples-per-epoch", int), ("lr", float), ("batch-size", int),
                       ("seed", int), ("val-every", int), ("checkpoint-every", int), ("num-workers", int)):  # fmt: skip
        parser.add_argument(
            f"--{name}", type=kind, help="override of the 'train' section (default: TrainConfig)"
        )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    return parser


def train_survival_parser() -> argparse.ArgumentParser:
    parser = _parser("train-survival", "Train the RFS fusion network and the bagged ICARE model.")
    parser.add_argument(
        "--data", type=Path, required=True, help="HECKTOR 2025 folder with Task 2 CSV and images"
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder (e.g. weights/survival)")
    parser.add_argument(
        "--seg-weights",
        type=Path,
        required=True,
        help="segmentation weights folder: its preprocessing is used, and its masks by default",
    )
    parser.add_argument("--gt-masks", action="store_true", help="use ground-truth masks from Task 1 instead")
    parser.add_argument("--config", type=Path, help="JSON with SurvivalConfig sections")
    parser.add_argument("--cache", type=Path, default=None, help="input cache (default: OUT/cache)")
    parser.add_argument("--max-cases", type=int, default=None, help="use the first N patients (tests)")
    parser.add_argument("--ablation", type=Path, default=None, help="write the ablation table to this file")
    parser.add_argument("--truth", type=Path, default=None, help="synth_truth.csv for the oracle C-index")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    return parser


def weights_parser() -> argparse.ArgumentParser:
    parser = _parser(
        "weights",
        "Where the weights are looked for, which folder is used, and whether its files match their checksums.",
    )
    parser.add_argument(
        "--weights", type=Path, default=None, help=f"weights folder (default: ${ENV_WEIGHTS}, ...)"
    )
    parser.add_argument(
        "--path", action="store_true", help="print the folder in use and the search locations"
    )
    parser.add_argument("--verify", action="store_true", help="check every weight file's sha256")
    return parser


def train_staging_parser() -> argparse.ArgumentParser:
    parser = _parser(
        "train-staging",
        "Fit the T/N stage classifier on the 2026 table's T-stage / N-stage columns, compare it out of fold with "
        "the majority class and the 7th-edition rule (balanced accuracy), write staging weights.",
    )
    parser.add_argument("--data", type=Path, required=True, help="training layout with the Task-2 CSV")
    parser.add_argument("--out", type=Path, required=True, help="staging weights folder to write")
    parser.add_argument("--folds", type=int, default=5, help="out-of-fold comparison folds")
    parser.add_argument("--seed", type=int, default=0, help="fold shuffling seed")
    parser.add_argument("--C", type=float, default=1.0, help="inverse L2 strength of the classifier")
    return parser


PARSERS: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "synth": synth_parser,
    "evaluate": evaluate_parser,
    "train-seg": train_seg_parser,
    "train-survival": train_survival_parser,
    "train-staging": train_staging_parser,
    "predict": predict_parser,
    "process": process_parser,
    "serve": serve_parser,
    "weights": weights_parser,
}
