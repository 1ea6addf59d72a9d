"""The whole per-case pipeline, models loaded once: read -> preprocess -> segment -> post-process -> map back ->
(radiomics + fusion + ICARE) -> write. Used by ``process.py``, ``hmvnet process``, ``hmvnet predict`` and the
HTTP service.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from hmvnet import Label
from hmvnet.app import guards
from hmvnet.app.case_log import case_context
from hmvnet.app.parsers import default_outputs, process_parser
from hmvnet.app.profiles import (
    N_STAGE_JSON,
    PROFILES,
    RFS_JSON,
    SEG_2025,
    SEG_2026,
    T_STAGE_JSON,
    get_profile,
)
from hmvnet.data.cases import Case, read_gc_case
from hmvnet.data.weights import describe_search, resolve_weights_dir
from hmvnet.data.writers import write_json, write_label
from hmvnet.errors import InputError, WeightsError
from hmvnet.segmentation.segmenter import Segmenter
from hmvnet.staging.geometry import staging_geometry
from hmvnet.staging.model import StagingModel

log = logging.getLogger("hmvnet")

OUTPUT_PROFILES = PROFILES  # the one table lives in hmvnet.app.profiles
__all__ = ["OUTPUT_PROFILES", "SEG_2025", "SEG_2026", "Pipeline", "cli_main"]


_OUTPUT_FILES = (SEG_2025, SEG_2026, RFS_JSON, T_STAGE_JSON, N_STAGE_JSON)
"""Every file a profile can write: all removed at the start of a run, whichever profile runs."""


class Pipeline:
    """Segmentation, survival and staging models, loaded once from a weights folder.

    ``staging`` defaults to the 7th-edition rule when the weights folder has no ``staging/`` subfolder.
    """

    def __init__(
        self,
        segmenter: Segmenter,
        survival: Any | None,
        weights_dir: Path,
        staging: StagingModel | None = None,
    ):
        self.segmenter = segmenter
        self.survival = survival
        self.weights_dir = weights_dir
        self.case_budget_s = guards.case_budget_s()
        """Seconds from the start of a case by which its outputs are written (``$HMVNET_CASE_BUDGET_S``)."""
        self.staging = staging or StagingModel()

    @classmethod
    def load(
        cls,
        weights_dir: Path | None = None,
        device: str | None = None,
        survival: bool = True,
        folds: list[int] | None = None,
        tta: bool | None = None,
    ) -> Pipeline:
        """Load the models; ``folds`` picks fold models (default all), ``tta`` overrides ``mirror_tta``."""
        folder = resolve_weights_dir(weights_dir)
        start = time.perf_counter()
        seg_dir = folder / "segmentation"
        if not (seg_dir / "config.json").is_file():
            raise WeightsError(
                f"segmentation weights missing: searched {describe_search(weights_dir)}; train them with "
                "'hmvnet train-seg', or give --weights or HMVNET_WEIGHTS a folder holding segmentation/config.json"
            )
        segmenter = Segmenter.load(seg_dir, device, folds=folds, tta=tta)
        predictor = None
        if survival:
            from hmvnet.survival.predictor import SurvivalPredictor

            predictor = SurvivalPredictor.load(folder / "survival")
        staging = StagingModel.load(folder / "staging")
        log.info("models loaded from %s in %.1f s", folder, time.perf_counter() - start)
        return cls(segmenter, predictor, folder, staging)

    def run(
        self,
        case: Case,
        output_dir: Path,
        outputs: str = "both",
        segmentation_path: Path | None = None,
        deadline: float | None = None,
    ) -> dict[str, Any]:
        """Process one case already read; write the outputs of the ``outputs`` profile into ``output_dir``.

        Earlier outputs in ``output_dir`` are removed first. ``deadline`` (``time.perf_counter()`` seconds; default
        now + :attr:`case_budget_s`) bounds the survival step: past it, or on a MemoryError there, the risk is
        :func:`hmvnet.app.guards.fallback_risk` and ``result["risk_source"]`` says so. The result holds ``risk``
        (higher = earlier relapse) whatever the profile; ``rfs_value`` is what rfs.json received (the profile's
        sign convention, see :mod:`hmvnet.app.profiles`)."""
        profile = get_profile(outputs)
        seg_rel, want_risk = profile.segmentation, profile.needs_survival
        if want_risk and self.survival is None:
            raise WeightsError(f"outputs={outputs!r} needs the survival model, which was not loaded")
        guards.clear_outputs(
            output_dir, [*_OUTPUT_FILES, *([segmentation_path] if segmentation_path else [])]
        )
        deadline = deadline if deadline is not None else time.perf_counter() + self.case_budget_s
        result: dict[str, Any] = {"case_id": case.case_id}
        overlap = guards.overlap_warning(case.ct, case.pet, self.segmenter.config.preprocess.crop_size_mm)
        if overlap:
            log.warning("%s: %s", case.case_id, overlap)
        result["warnings"] = [*case.warnings, *([overlap] if overlap else [])]
        seg = self.segmenter(case)
        result.update(seg.timings)
        labels = sitk.GetArrayViewFromImage(seg.label)
        spacing_ml = float(np.prod(case.ct.GetSpacing())) / 1000.0
        result["gtvp_ml"] = float((labels == Label.GTVP).sum() * spacing_ml)
        result["gtvn_ml"] = float((labels == Label.GTVN).sum() * spacing_ml)
        if seg_rel is not None or segmentation_path is not None:
            path = segmentation_path or Path(output_dir) / seg_rel  # type: ignore[operator]  # seg_rel set here
            result["segmentation"] = str(write_label(seg.label, path, reference=case.ct))
        if want_risk:
            result.update(self._risk(case, seg, deadline, result["gtvp_ml"], result["gtvn_ml"]))
            result["rfs_value"] = profile.rfs_value(result["risk"])
            result["rfs"] = str(write_json(result["rfs_value"], Path(output_dir) / RFS_JSON))
        if profile.staging:
            result.update(self.stage(case, seg.label, Path(output_dir)))
        return result

    def _risk(self, case: Case, seg: Any, deadline: float, gtvp_ml: float, gtvn_ml: float) -> dict[str, Any]:
        """The survival model's risk within the time left before ``deadline``, else the fallback risk."""
        start = time.perf_counter()
        survival = self.survival
        assert survival is not None  # checked by run()
        seconds = deadline - start - guards.SURVIVAL_RESERVE_S
        risk, error, timed_out = guards.run_within(lambda: survival.predict_risk(case, seg), seconds)
        reason = None
        if timed_out:
            reason = f"the survival model did not finish within the case budget ({seconds:.0f} s left)"
        elif isinstance(error, MemoryError):
            reason = "the survival model ran out of memory"
        elif error is not None:
            raise error
        out: dict[str, Any] = {"survival_s": time.perf_counter() - start, "risk_source": "model"}
        if reason is None:
            out["risk"] = float(risk)  # type: ignore[arg-type]  # set when neither timed out nor failed
            if not np.isfinite(out["risk"]):
                raise RuntimeError(f"survival model returned a non-finite risk for {case.case_id}")
            return out
        out["risk"] = guards.fallback_risk(gtvp_ml, gtvn_ml)
        out["risk_source"] = f"fallback log(1 + GTV ml): {reason}"
        log.warning(
            "%s: %s; risk = log(1 + GTVp + GTVn ml) = %.3f instead", case.case_id, reason, out["risk"]
        )
        return out

    def stage(self, case: Case, label: sitk.Image, output_dir: Path) -> dict[str, Any]:
        """T and N stage of the final label on the CT grid; writes t-stage.json and n-stage.json (JSON strings)."""
        start = time.perf_counter()
        geometry = staging_geometry(label, case.ct)
        stages = self.staging.predict(geometry, case.clinical)
        return {
            "t_stage": stages["t"],
            "n_stage": stages["n"],
            "t_stage_json": str(write_json(stages["t"], output_dir / T_STAGE_JSON)),
            "n_stage_json": str(write_json(stages["n"], output_dir / N_STAGE_JSON)),
            "staging_s": time.perf_counter() - start,
        }

    def process_case(self, input_dir: Path, output_dir: Path, outputs: str = "both") -> dict[str, Any]:
        """Read the grand-challenge layout in ``input_dir`` and write the outputs into ``output_dir``."""
        start = time.perf_counter()
        guards.clear_outputs(output_dir, _OUTPUT_FILES)  # a failing read must not leave earlier outputs
        case = read_gc_case(Path(input_dir))
        read_s = time.perf_counter() - start
        with case_context(case.case_id):
            result = self.run(case, output_dir, outputs, deadline=start + self.case_budget_s)
            result["read_s"] = read_s
            result["total_s"] = time.perf_counter() - start
            self._log_done(result)
        return result

    @staticmethod
    def _log_done(result: dict[str, Any]) -> None:
        log.info(
            "case done: %s",
            ", ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in result.items()),
        )


def cli_main(argv: list[str]) -> int:
    args = process_parser().parse_args(argv)
    args.outputs = args.outputs or default_outputs()
    start = time.perf_counter()
    survival = PROFILES[args.outputs].needs_survival
    guards.check_output_writable(args.output)  # before minutes of model loading and processing
    pipeline = Pipeline.load(args.weights, args.device, survival, folds=args.folds, tta=args.tta)
    try:
        result = pipeline.process_case(args.input, args.output, args.outputs)
    except OSError as exc:  # a full or vanished output folder: one line, exit 2
        raise InputError(f"cannot write {exc.filename or args.output}: {exc.strerror or exc}") from exc
    log.info(
        "done in %.1f s (model loading included); outputs in %s", time.perf_counter() - start, args.output
    )
    for key in ("segmentation", "rfs", "t_stage_json", "n_stage_json"):
        if key in result:
            print(f"{key}: {result[key]}")
    return 0
