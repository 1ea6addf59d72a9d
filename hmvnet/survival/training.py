"""Training of the RFS model (``hmvnet train-survival``) and its ablation.

1. Inputs per patient (cached): the case is preprocessed with the segmentation model's preprocessing; the lesion
   mask is the segmentation model's prediction (default) or the ground truth (``--gt-masks``, from
   ``Task 1/<PID>/<PID>.nii.gz``); from it come the 2 048 radiomics features and a CT/PET crop centred on the
   lesions; the clinical record comes from the Task 2 CSV.
2. Cross-validation, folds stratified by event and centre (seed 42). Per fold, on the training part only: the
   clinical encoder, the radiomics standardiser and the DeepHit time grid are fitted; the fusion network is
   trained with DeepHit + 0.1 x survival contrastive loss (AdamW, ReduceLROnPlateau on an inner validation split
   after each round of epochs); the bagged ICARE model is fitted on the network's fused features of the training
   patients and predicts the held-out fold (out-of-fold risks).
3. The fold models are written to ``OUT`` (``config.json``, ``fold{k}_fusion.safetensors``,
   ``fold{k}_state.json``); at inference the case's risk is the median of the fold models' risks.
4. ``--ablation REPORT.md``: out-of-fold C-index of clinical-only Cox, ICARE on radiomics, ours without
   segmentation-derived features and ours in full, next to the oracle C-index of the generator's true hazard
   (``synth_truth.csv``, phantoms only).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import random
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk
import torch
from tqdm import tqdm

from hmvnet.config import (
    MaskSource,
    SegmentationConfig,
    SurvivalConfig,
    load_config,
    read_config_file,
    save_config,
    to_dict,
)
from hmvnet.data.cases import read_label, read_training_case
from hmvnet.data.clinical_record import ClinicalRecord, record_from_mapping
from hmvnet.data.folds import event_centre_folds
from hmvnet.data.task2 import TASK2_CSV, read_table
from hmvnet.data.weights import save_state_dict, sha256_file
from hmvnet.data.writers import write_text, write_with
from hmvnet.errors import InputError
from hmvnet.evaluation.metrics import concordance_index
from hmvnet.geometry import resample_label
from hmvnet.segmentation.preprocessing import preprocess
from hmvnet.survival.clinical_encoder import ClinicalEncoder
from hmvnet.survival.features import make_executor
from hmvnet.survival.fusion import FeatureStandardiser, FusionNet
from hmvnet.survival.icare import BaggedIcareSurvival
from hmvnet.survival.losses import discretise, make_time_grid, total_loss
from hmvnet.survival.predictor import FoldModel, SurvivalInputs, crop_around, lesion_centre

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------ data
@dataclasses.dataclass
class SurvivalSample:
    """Cached inputs of one patient."""

    pid: str
    time: float
    event: bool
    clinical: ClinicalRecord
    image: np.ndarray  # (2, z, y, x) crop centred on the lesions
    image_centre: np.ndarray  # (2, z, y, x) crop at the centre of the crop grid (no segmentation)
    radiomics: np.ndarray  # (2048,)

    def inputs(self, use_segmentation: bool) -> SurvivalInputs:
        if use_segmentation:
            return SurvivalInputs(self.image, self.radiomics, self.clinical)
        return SurvivalInputs(self.image_centre, np.zeros(0), self.clinical)


def read_outcomes(data_dir: Path) -> pd.DataFrame:
    path = Path(data_dir) / TASK2_CSV
    if not path.is_file():
        raise InputError(f"no {TASK2_CSV} in {data_dir} (expected the HECKTOR 2025 Task 2 table)")
    return read_table(path, required=("RFS", "Relapse"))


def _case_dir(data_dir: Path, pid: str) -> Path:
    for task in ("Task 2", "Task 1"):
        if (data_dir / task / pid).is_dir():
            return data_dir / task / pid
    raise InputError(f"no image folder for patient {pid} under {data_dir}/Task 2 or Task 1")


def prepare_patient(
    data_dir: Path, row: pd.Series, seg_config: SegmentationConfig, config: SurvivalConfig,
    segmenter: Any, cache_dir: Path, executor: Any,
) -> SurvivalSample:  # fmt: skip
    """Inputs of one patient, from the cache when present."""
    pid = str(row["PatientID"])
    record = record_from_mapping(row.to_dict())
    entry = cache_dir / f"{pid}.npz"
    if not entry.is_file():
        from hmvnet.survival.features import extract_features

        case = read_training_case(_case_dir(data_dir, pid), record, with_label=False)
        if segmenter is not None:
            seg = segmenter(case)
            pre, crop_label = seg.preprocessed, seg.crop_label
        else:
            label_path = data_dir / "Task 1" / pid / f"{pid}.nii.gz"
            if not label_path.is_file():
                raise InputError(f"--gt-masks: no ground-truth label {label_path}")
            pre = preprocess(case.ct, case.pet, seg_config.preprocess)
            crop_label = resample_label(read_label(label_path), pre.ct_hu)
        label = sitk.GetArrayViewFromImage(crop_label)
        feats = extract_features(pre.ct_hu, pre.pet, crop_label, config.radiomics, executor=executor)
        size = tuple(config.fusion.crop_size)
        arrays = dict(
            image=crop_around(pre.image, lesion_centre(label), size).astype(np.float16),  # type: ignore[arg-type]
            image_centre=crop_around(pre.image, tuple(s // 2 for s in label.shape), size).astype(np.float16),  # type: ignore[arg-type]
            radiomics=feats.to_numpy(dtype=np.float64),
        )
        write_with(entry, lambda tmp: np.savez(tmp, **arrays))
    data = np.load(entry)
    return SurvivalSample(pid, float(row["RFS"]), bool(row["Relapse"]), record, data["image"].astype(np.float32),
                   data["image_centre"].astype(np.float32), data["radiomics"])  # fmt: skip


# ------------------------------------------------------------------------------------------ fusion training
def _seed(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def fit_fold(patients: list[SurvivalSample], config: SurvivalConfig, seed: int) -> FoldModel:
    """Fit the encoder, standardiser, fusion network and bagged ICARE on ``patients`` (a training fold)."""
    train_cfg = config.train
    use_seg = config.use_segmentation_features
    inputs = [p.inputs(use_seg) for p in patients]
    times = np.array([p.time for p in patients])
    events = np.array([p.event for p in patients])
    encoder = ClinicalEncoder().fit([p.clinical for p in patients])
    standardiser = FeatureStandardiser()
    if use_seg:
        standardiser.fit(np.stack([p.radiomics for p in patients]))
    grid = make_time_grid(times, events, config.fusion.n_bins)
    _seed(seed)
    net = FusionNet(config.fusion, encoder.n_features_)
    fold = FoldModel(encoder, standardiser, net, BaggedIcareSurvival(), grid)
    image, clinical, radiomics = fold.tensors(inputs)
    bins = torch.from_numpy(discretise(times, grid))
    t_all = torch.from_numpy(times.astype(np.float32))
    e_all = torch.from_numpy(events.astype(np.float32))

    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(patients))
    n_inner = max(2, len(patients) // 10)
    inner, train_idx = perm[:n_inner], perm[n_inner:]
    optimiser = torch.optim.AdamW(net.parameters(), lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimiser, mode="min", factor=0.5, patience=1)

    def batch_loss(idx: np.ndarray) -> torch.Tensor:
        out = net(image[idx], clinical[idx], radiomics[idx])
        return total_loss(out["deephit_logits"], out["projection"], bins[idx], t_all[idx], e_all[idx],
                          contrastive_weight=train_cfg.contrastive_weight).total  # fmt: skip

    for _round in range(train_cfg.rounds):
        net.train()
        for _epoch in range(train_cfg.epochs_per_round):
            order = rng.permutation(train_idx)
            for start in range(0, len(order), train_cfg.batch_size):
                idx = order[start : start + train_cfg.batch_size]
                if len(idx) < 2:  # batch norm needs two patients
                    continue
                optimiser.zero_grad(set_to_none=True)
                loss = batch_loss(idx)
                loss.backward()
                optimiser.step()
        net.eval()
        with torch.no_grad():
            scheduler.step(float(batch_loss(inner)))
    net.eval()
    embeddings = fold.embed(inputs)
    from sksurv.util import Surv

    icare = BaggedIcareSurvival(
        n_estimators=train_cfg.icare_estimators,
        parameters_sets=[dict(p) for p in train_cfg.icare_parameters_sets],
        aggregation_method="median",
        random_state=seed,
    ).fit(embeddings, Surv.from_arrays(events, times))
    fold.icare = icare
    return fold


def cross_validate(patients: list[SurvivalSample], config: SurvivalConfig, folds: list[np.ndarray],
                   desc: str = "ours") -> tuple[np.ndarray, list[FoldModel]]:  # fmt: skip
    """Out-of-fold risks and the fold models."""
    oof = np.full(len(patients), np.nan)
    models = []
    for k, val in enumerate(tqdm(folds, desc=desc)):
        train = np.setdiff1d(np.arange(len(patients)), val)
        model = fit_fold([patients[i] for i in train], config, config.train.seed + k)
        oof[val] = model.risk([patients[i].inputs(config.use_segmentation_features) for i in val])
        models.append(model)
    return oof, models


def save_models(models: list[FoldModel], config: SurvivalConfig, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = {}
    for k, model in enumerate(models):
        weights[f"fold{k}_fusion.safetensors"] = save_state_dict(model.net.state_dict(),
                                                                 out_dir / f"fold{k}_fusion.safetensors")  # fmt: skip
        state = out_dir / f"fold{k}_state.json"
        write_text(json.dumps(model.state_json()), state)
        weights[state.name] = sha256_file(state)
    return save_config(dataclasses.replace(config, weights=weights), out_dir)


# ------------------------------------------------------------------------------------------ ablation
def baseline_oof(patients: list[SurvivalSample], folds: list[np.ndarray], kind: str, seed: int) -> np.ndarray:
    """Out-of-fold risks of a baseline: "clinical_cox" or "icare_radiomics"."""
    from sksurv.linear_model import CoxPHSurvivalAnalysis
    from sksurv.util import Surv

    times = np.array([p.time for p in patients])
    events = np.array([p.event for p in patients])
    oof = np.full(len(patients), np.nan)
    for k, val in enumerate(folds):
        train = np.setdiff1d(np.arange(len(patients)), val)
        y = Surv.from_arrays(events[train], times[train])
        if kind == "clinical_cox":
            encoder = ClinicalEncoder().fit([patients[i].clinical for i in train])
            model = CoxPHSurvivalAnalysis(alpha=1.0).fit(
                encoder.transform([patients[i].clinical for i in train]), y
            )
            oof[val] = model.predict(encoder.transform([patients[i].clinical for i in val]))
        elif kind == "icare_radiomics":
            x = np.stack([p.radiomics for p in patients])
            model = BaggedIcareSurvival(n_estimators=100, rho=0.8, cmin=0.53, max_features=0.1, mandatory_features=[x.shape[1] - 2, x.shape[1] - 1],
                                        random_state=seed + k).fit(x[train], y)  # fmt: skip
            oof[val] = model.predict(x[val])
        else:
            raise ValueError(kind)
    return oof


def write_ablation(path: Path, rows: list[tuple[str, float]], oracle: float | None, n: int, events: int,
                   command: str, seconds: float, notes: str) -> None:  # fmt: skip
    lines = [
        "# Survival ablation on the phantom cohort (out-of-fold C-index, 5 folds)",
        "",
        f"Generated by `{command}` on {date.today().isoformat()}, {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} torch threads, {seconds / 60:.1f} min. {n} patients, {events} relapses.",
        "",
        "| model | C-index | / oracle |",
        "|---|---|---|",
    ]
    for name, c in rows:
        ratio = f"{c / oracle:.3f}" if oracle else "—"
        lines.append(f"| {name} | {c:.4f} | {ratio} |")
    if oracle is not None:
        lines.append(f"| oracle: the generator's true log-hazard | {oracle:.4f} | 1.000 |")
    lines += ["", notes, ""]
    write_text("\n".join(lines), path)


# ------------------------------------------------------------------------------------------ CLI
def _relative(arg: str) -> str:
    """An argument as written in reports: paths relative to the working directory (no machine paths)."""
    path = Path(arg)
    return os.path.relpath(path) if path.is_absolute() else arg


def build_parser() -> argparse.ArgumentParser:
    """The ``hmvnet train-survival`` parser (built in :mod:`hmvnet.app.parsers`, light for ``--help``)."""
    from hmvnet.app.parsers import train_survival_parser

    return train_survival_parser()


def prepare_samples(args: argparse.Namespace, config: SurvivalConfig) -> list[SurvivalSample]:
    """Every patient's cached inputs (segmenting with the segmentation weights unless ``--gt-masks``)."""
    seg_config: SegmentationConfig = load_config(SegmentationConfig, args.seg_weights)
    segmenter = None
    if not args.gt_masks:
        from hmvnet.segmentation.segmenter import Segmenter

        segmenter = Segmenter.load(args.seg_weights)
    table = read_outcomes(args.data)
    if args.max_cases:
        table = table.head(args.max_cases)
    cache = (args.cache or args.out / "cache") / config.masks
    cache.mkdir(parents=True, exist_ok=True)
    executor = make_executor(config.radiomics.workers) if config.radiomics.workers > 1 else None
    try:
        return [prepare_patient(args.data, row, seg_config, config, segmenter, cache, executor)
                for _, row in tqdm(list(table.iterrows()), desc="inputs")]  # fmt: skip
    finally:
        if executor is not None:
            executor.shutdown()


def run_ablation(args: argparse.Namespace, argv: list[str], config: SurvivalConfig, patients: list[SurvivalSample],
                 folds: list[np.ndarray], c_full: float, start: float) -> None:  # fmt: skip
    """The ablation table: clinical Cox, ICARE on radiomics, ours without segmentation, ours (and the oracle)."""
    times = np.array([p.time for p in patients])
    events = np.array([p.event for p in patients])
    no_seg = dataclasses.replace(config, use_segmentation_features=False,
                                 fusion=dataclasses.replace(config.fusion, radiomics_dim=0))  # fmt: skip
    oof_noseg, _ = cross_validate(patients, no_seg, folds, desc="ours w/o segmentation")
    rows = [
        ("clinical-only Cox (ridge, alpha 1)",
         concordance_index(times, events, baseline_oof(patients, folds, "clinical_cox", config.train.seed))),
        ("bagged ICARE on the 2 048 radiomics features",
         concordance_index(times, events, baseline_oof(patients, folds, "icare_radiomics", config.train.seed))),
        ("ours without segmentation-derived features (image crop at the grid centre + clinical)",
         concordance_index(times, events, oof_noseg)),
        ("ours (image + clinical + radiomics -> fusion -> bagged ICARE)", c_full),
    ]  # fmt: skip
    oracle = None
    if args.truth and args.truth.is_file():
        truth = pd.read_csv(args.truth).set_index("PatientID")
        oracle = concordance_index(
            times, events, truth.loc[[p.pid for p in patients], "true_risk"].to_numpy()
        )
    notes = (f"Masks: {config.masks}. Fusion config: {json.dumps(to_dict(config.fusion))}. "
             f"Training: {json.dumps(to_dict(config.train))}.")  # fmt: skip
    write_ablation(args.ablation, rows, oracle, len(patients), int(events.sum()),
                   "hmvnet train-survival " + " ".join(_relative(a) for a in argv), time.perf_counter() - start, notes)  # fmt: skip
    log.info("ablation written to %s", args.ablation)


def cli_main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    config = read_config_file(SurvivalConfig, Path(args.config)) if args.config else SurvivalConfig()
    masks = MaskSource.GROUND_TRUTH if args.gt_masks else MaskSource.PREDICTED
    config = dataclasses.replace(config, masks=masks)
    patients = prepare_samples(args, config)
    log.info("inputs ready for %d patients in %.0f s", len(patients), time.perf_counter() - start)
    folds = event_centre_folds([p.pid for p in patients], [p.event for p in patients],
                               config.train.n_folds, config.train.seed)  # fmt: skip
    oof, models = cross_validate(patients, config, folds)
    c_full = concordance_index(
        np.array([p.time for p in patients]), np.array([p.event for p in patients]), oof
    )
    log.info("out-of-fold C-index (ours, full): %.4f", c_full)
    save_models(models, config, args.out)
    oof_table = pd.DataFrame({"PatientID": [p.pid for p in patients], "risk": oof})
    write_with(args.out / "oof_risks.csv", lambda tmp: oof_table.to_csv(tmp, index=False))
    if args.ablation:
        run_ablation(args, argv, config, patients, folds, c_full, start)
    return 0
