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
from hmvnet.errors import WeightsError
from hmvnet.segmentation.segmenter import Segmenter
from hmvnet.staging.geometry import staging_geometry
from hmvnet.staging.model import StagingModel

log = logging.getLogger("hmvnet")

OUTPUT_PROFILES = PROFILES  # the one table lives in hmvnet.app.profiles
__all__ = ["OUTPUT_PROFILES", "SEG_2025", "SEG_2026", "Pipeline", "cli_main"]


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
        self, case: Case, output_dir: Path, outputs: str = "both", segmentation_path: Path | None = None
    ) -> dict[str, Any]:
        """Process one case already read; write the outputs of the ``outputs`` profile into ``output_dir``.

        The result holds ``risk`` (higher = earlier relapse) whatever the profile; ``rfs_value`` is what
        rfs.json received (the profile's sign convention, see :mod:`hmvnet.app.profiles`).
        """
        profile = get_profile(outputs)
        seg_rel, want_risk = profile.segmentation, profile.needs_survival
        if want_risk and self.survival is None:
            raise WeightsError(f"outputs={outputs!r} needs the survival model, which was not loaded")
        result: dict[str, Any] = {"case_id": case.case_id}
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
            start = time.perf_counter()
            assert self.survival is not None  # checked at the top
            risk = float(self.survival.predict_risk(case, seg))
            if not np.isfinite(risk):
                raise RuntimeError(f"survival model returned a non-finite risk for {case.case_id}")
            result["survival_s"] = time.perf_counter() - start
            result["risk"] = risk
            result["rfs_value"] = profile.rfs_value(risk)
            result["rfs"] = str(write_json(result["rfs_value"], Path(output_dir) / RFS_JSON))
        if profile.staging:
            result.update(self.stage(case, seg.label, Path(output_dir)))
        return result

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
        case = read_gc_case(Path(input_dir))
        read_s = time.perf_counter() - start
        with case_context(case.case_id):
            result = self.run(case, output_dir, outputs)
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
    pipeline = Pipeline.load(args.weights, args.device, survival, folds=args.folds, tta=args.tta)
    result = pipeline.process_case(args.input, args.output, args.outputs)
    log.info(
        "done in %.1f s (model loading included); outputs in %s", time.perf_counter() - start, args.output
    )
    for key in ("segmentation", "rfs", "t_stage_json", "n_stage_json"):
        if key in result:
            print(f"{key}: {result[key]}")
    return 0
