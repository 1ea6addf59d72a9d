"""Training of the HM-VNet segmentation network (``hmvnet train-seg``, ``python train.py``).

Reads the HECKTOR 2025 training layout (``Task 1/<PID>/...``; the phantom generator writes the same), preprocesses
every case once into a cache (``image.npy`` float16 (2, z, y, x) and ``label.npy`` uint8 (z, y, x) per case, keyed
by a hash of the preprocessing configuration), and trains with 0.5 Dice + 0.5 cross-entropy, AdamW and a cosine
schedule on patches sampled around background, GTVp and GTVn (MONAI ``RandCropByLabelClassesd``), with random
scaling, elastic deformation, flips and intensity perturbation.

Validation runs on whole validation cases (the full crop, not patches) through the real inference path
(:class:`hmvnet.segmentation.inference.SegmentationInferer` + :func:`hmvnet.segmentation.postprocessing.postprocess`) and reports GTVp Dice,
GTVn aggregated Dice and F1 and the Task-1 proxy score on the crop grid.

Reproducibility and resume: every epoch re-seeds torch, numpy and the MONAI transforms from ``seed + epoch`` (and
the rank), so a run resumed from a checkpoint continues exactly as the uninterrupted run would. Checkpoints for
resume (``checkpoint_last.pt``: model, optimiser, scheduler, grad scaler, epoch, best score, RNG states) are
torch files read with ``weights_only=False`` (the numpy and Python RNG states are objects ``weights_only=True``
refuses), so only a run's own checkpoint is ever loaded this way; the weights shipped for inference are safetensors
with their sha256 in ``config.json``, and ``--init-weights`` reads safetensors only.

Multi-GPU / multi-node: launch with ``torchrun --nproc_per_node N -m hmvnet.segmentation.training ...`` (or ``hmvnet
train-seg`` under torchrun): DistributedDataParallel with NCCL on CUDA and gloo on CPU; rank 0 validates and
writes files.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import math
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from monai import transforms as mt
from monai.losses import DiceCELoss
from tqdm import tqdm

from hmvnet.config import (
    SegmentationConfig,
    SegmentationTrainConfig,
    load_config,
    read_config_file,
    save_config,
)
from hmvnet.data.folds import centre_folds
from hmvnet.data.weights import load_state_dict, save_state_dict
from hmvnet.data.writers import json_ready, write_json, write_with
from hmvnet.errors import InputError, WeightsError
from hmvnet.segmentation.cache import build_cache, load_entry
from hmvnet.segmentation.progress import append_csv as _append_csv
from hmvnet.segmentation.progress import write_training_curve

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------ data
def train_transforms(roi_size: Sequence[int], cfg: SegmentationTrainConfig) -> mt.Compose:
    """Patch sampling and augmentation (MONAI), on dicts with "image" (2, z, y, x) and "label" (1, z, y, x)."""
    keys = ("image", "label")
    return mt.Compose(
        [
            mt.SpatialPadd(keys, spatial_size=roi_size, mode="constant"),
            mt.RandCropByLabelClassesd(
                keys,
                label_key="label",
                spatial_size=roi_size,
                ratios=list(cfg.class_ratios),
                num_classes=3,
                num_samples=1,
                allow_smaller=False,
            ),
            mt.RandZoomd(
                keys,
                prob=cfg.zoom_prob,
                min_zoom=0.85,
                max_zoom=1.15,
                mode=("trilinear", "nearest"),
                keep_size=True,
            ),
            mt.Rand3DElasticd(
                keys,
                sigma_range=(5, 8),
                magnitude_range=(50, 150),
                prob=cfg.elastic_prob,
                mode=("bilinear", "nearest"),
                padding_mode="zeros",
            ),
            mt.RandFlipd(keys, prob=0.5, spatial_axis=2),  # left-right
            mt.RandScaleIntensityd("image", factors=0.1, prob=0.5, channel_wise=True),
            mt.RandShiftIntensityd("image", offsets=0.1, prob=0.5, channel_wise=True),
            mt.RandGaussianNoised("image", prob=0.15, std=0.02),
            mt.EnsureTyped(keys, track_meta=False),
        ]
    )


class PatchDataset(torch.utils.data.Dataset):
    """``length`` random patches drawn from cached cases (case chosen uniformly at random per item)."""

    def __init__(self, entries: Sequence[Path], length: int, transform: mt.Compose, seed: int):
        self.entries = list(entries)
        self.length = length
        self.transform = transform
        self.order = np.random.default_rng(seed).integers(0, len(self.entries), size=length)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        sample = self.transform(load_entry(self.entries[int(self.order[index])]))
        sample = sample[0] if isinstance(sample, list) else sample
        return {"image": sample["image"].float(), "label": sample["label"].long()}


# ------------------------------------------------------------------------------------------ distributed
def _is_main() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def _setup_distributed() -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    rank = dist.get_rank() if dist.is_initialized() else 0
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    return rank, world, device


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - third-party code (MONAI, scipy) may use the global RNG
    torch.manual_seed(seed)


# ------------------------------------------------------------------------------------------ validation
def validate(
    model: torch.nn.Module, entries: dict[str, Path], config: SegmentationConfig, device: torch.device
) -> dict[str, float]:
    """Whole-case validation through the inference path; metrics on the crop grid."""
    from hmvnet.evaluation.metrics import evaluate_segmentations
    from hmvnet.segmentation.segmenter import Segmenter

    segmenter = Segmenter(config, [model], device)
    pairs = []
    for entry in entries.values():
        data = load_entry(entry)
        spacing = tuple(json.loads((entry / "geometry.json").read_text())["spacing"])
        pairs.append((segmenter.segment_array(data["image"], spacing), data["label"][0], spacing))
    return evaluate_segmentations(pairs)


# ------------------------------------------------------------------------------------------ training
def selection_score(metrics: dict[str, float]) -> float:
    """The validation score used to keep the best epoch: the Task-1 proxy, or the GTVp Dice when the GTVn terms
    are undefined (no GTVn anywhere in the validation fold), or 0."""
    for key in ("task1_score", "gtvp_dsc"):
        value = metrics.get(key, math.nan)
        if value is not None and math.isfinite(value):
            return float(value)
    return 0.0


def _make_optimiser(model: torch.nn.Module, cfg: SegmentationTrainConfig):
    optimiser = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    def lr_lambda(epoch: int) -> float:
        if epoch < cfg.warmup_epochs:
            return (epoch + 1) / cfg.warmup_epochs
        progress = (epoch - cfg.warmup_epochs) / max(1, cfg.epochs - cfg.warmup_epochs)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return optimiser, torch.optim.lr_scheduler.LambdaLR(optimiser, lr_lambda)


@dataclass
class _Run:
    """One fold's training state: model (and its DDP wrapper ``net``), optimiser, schedule, grad scaler, the
    first epoch to run and the best validation so far."""

    model: torch.nn.Module
    net: torch.nn.Module
    optimiser: torch.optim.Optimizer
    scheduler: Any
    scaler: Any
    use_amp: bool
    start_epoch: int
    best: dict[str, Any]


def _split_cases(
    data_dir: Path,
    cache_dir: Path,
    seg_config: SegmentationConfig,
    cfg: SegmentationTrainConfig,
    fold: int,
    val_ids: Sequence[str] | None,
    fold_dir: Path,
    resume: bool,
) -> tuple[list[Path], dict[str, Path]]:
    """Build the cache (rank 0 first) and split it into training entries and validation entries by case ID
    (a resumed run keeps its ``split.json``); rank 0 writes ``split.json``."""
    entries = build_cache(data_dir, cache_dir, seg_config.preprocess, progress=True) if _is_main() else {}
    if dist.is_initialized():
        dist.barrier()
        if not _is_main():
            entries = build_cache(data_dir, cache_dir, seg_config.preprocess, progress=False)
    if val_ids is None and resume and (fold_dir / "split.json").is_file():
        val_ids = json.loads((fold_dir / "split.json").read_text())["val"]  # a resumed run keeps its split
    if val_ids is None:
        if not 0 <= fold < cfg.n_folds:
            raise InputError(f"--fold {fold} is outside 0..{cfg.n_folds - 1}")
        val_ids = centre_folds(list(entries), cfg.n_folds, cfg.seed)[fold]
    val_set = set(val_ids)
    missing = sorted(val_set - set(entries))
    if missing:
        raise InputError(f"validation cases not found in {data_dir}: {', '.join(missing[:5])}")
    train_entries = [entries[c] for c in sorted(entries) if c not in val_set]
    if not train_entries:
        raise InputError(f"fold {fold} leaves no training cases ({len(entries)} cases in {data_dir})")
    if _is_main():
        split = {"train": sorted(set(entries) - val_set), "val": sorted(val_set)}
        write_json(split, fold_dir / "split.json", indent=1)
    return train_entries, {c: entries[c] for c in sorted(val_set)}


def _start_run(
    seg_config: SegmentationConfig,
    cfg: SegmentationTrainConfig,
    device: torch.device,
    fold: int,
    ckpt_path: Path,
    resume: bool,
    init_weights: Path | None,
) -> _Run:
    """A fresh (or ``init_weights``-initialised) model with its optimiser, or the state of ``ckpt_path`` when
    ``resume`` finds it."""
    from hmvnet.segmentation.network import build_model

    _seed_everything(cfg.seed)
    model = build_model(seg_config.model).to(device)
    if init_weights is not None:
        load_init_weights(model, Path(init_weights))
        log.info("fold %d starts from %s", fold, init_weights)
    optimiser, scheduler = _make_optimiser(model, cfg)
    use_amp = device.type == "cuda" and seg_config.inference.amp
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    start_epoch, best = 0, {"score": -1.0}
    if resume and ckpt_path.is_file():
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=False)
        model.load_state_dict(ckpt["model"])
        optimiser.load_state_dict(ckpt["optimiser"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        start_epoch, best = ckpt["epoch"] + 1, ckpt["best"]
        log.info("resumed fold %d from %s at epoch %d", fold, ckpt_path, start_epoch)
    net: torch.nn.Module = model
    if dist.is_initialized():
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    return _Run(model, net, optimiser, scheduler, scaler, use_amp, start_epoch, best)


def _train_epoch(run: _Run, loader, loss_fn, device: torch.device, desc: str) -> list[float]:
    """One pass over ``loader``; returns the batch losses."""
    run.net.train()
    losses: list[float] = []
    bar = tqdm(loader, desc=desc, disable=not _is_main(), leave=False)
    for batch in bar:
        image, label = batch["image"].to(device), batch["label"].to(device)
        run.optimiser.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.float16, enabled=run.use_amp):
            loss = loss_fn(run.net(image), label)
        run.scaler.scale(loss).backward()
        run.scaler.step(run.optimiser)
        run.scaler.update()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{np.mean(losses):.4f}")
    run.scheduler.step()
    return losses


def _epoch_loader(
    train_entries: list[Path], transform, cfg: SegmentationTrainConfig, epoch_seed: int, world: int
):
    per_rank = max(cfg.batch_size, cfg.samples_per_epoch // world)
    return torch.utils.data.DataLoader(
        PatchDataset(train_entries, per_rank, transform, epoch_seed),
        batch_size=cfg.batch_size,
        shuffle=False,
        num_workers=cfg.num_workers,
        generator=torch.Generator().manual_seed(epoch_seed),
    )


def _validate_epoch(
    run: _Run,
    val_entries: dict[str, Path],
    seg_config: SegmentationConfig,
    device,
    epoch: int,
    fold_dir: Path,
) -> dict[str, float]:
    """Validate (rank 0), keep ``best.safetensors`` when the selection score improves; returns the metrics."""
    run.model.eval()
    metrics = validate(run.model, val_entries, seg_config, device)
    score = selection_score(metrics)
    if score > run.best["score"]:
        run.best = {"score": score, "epoch": epoch + 1, **metrics}
        save_state_dict(run.model.state_dict(), fold_dir / "best.safetensors")
    return metrics


def train_fold(
    data_dir: Path,
    out_dir: Path,
    seg_config: SegmentationConfig,
    cfg: SegmentationTrainConfig,
    fold: int,
    cache_dir: Path,
    resume: bool = False,
    max_epochs: int | None = None,
    val_ids: Sequence[str] | None = None,
    init_weights: Path | None = None,
) -> dict[str, Any]:
    """Train one fold; returns the best validation metrics. ``max_epochs`` stops early (for tests and
    interruption drills) without changing the schedule, which always spans ``cfg.epochs``. ``val_ids`` fixes the
    validation cases instead of the centre-stratified fold (e.g. to keep a run's validation cases unseen when its
    cohort grows); every other case trains. ``init_weights`` (a safetensors file, e.g. shipped weights) starts a
    new run from those weights with a fresh optimiser, schedule and best score (fine-tuning); a checkpoint taken
    up by ``resume`` wins over it. Rank 0 writes ``log.csv`` and its plot ``progress.png`` every epoch."""
    rank, world, device = _setup_distributed()
    fold_dir = out_dir / f"fold{fold}"
    if _is_main():
        fold_dir.mkdir(parents=True, exist_ok=True)
    train_entries, val_entries = _split_cases(
        data_dir, cache_dir, seg_config, cfg, fold, val_ids, fold_dir, resume
    )
    ckpt_path = fold_dir / "checkpoint_last.pt"
    run = _start_run(seg_config, cfg, device, fold, ckpt_path, resume, init_weights)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, lambda_dice=0.5, lambda_ce=0.5)
    transform = train_transforms(seg_config.inference.roi_size, cfg)
    log_path = fold_dir / "log.csv"
    end_epoch = cfg.epochs if max_epochs is None else min(cfg.epochs, max_epochs)
    for epoch in range(run.start_epoch, end_epoch):
        epoch_seed = cfg.seed * 100_003 + epoch * 1009 + rank
        _seed_everything(epoch_seed)
        transform.set_random_state(seed=epoch_seed % 2**32)
        loader = _epoch_loader(train_entries, transform, cfg, epoch_seed, world)
        t0 = time.perf_counter()
        losses = _train_epoch(run, loader, loss_fn, device, f"fold {fold} epoch {epoch + 1}/{cfg.epochs}")
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": float(np.mean(losses)),
            "lr": run.optimiser.param_groups[0]["lr"],
            "epoch_s": time.perf_counter() - t0,
        }
        is_last = epoch + 1 == end_epoch
        if _is_main() and val_entries and ((epoch + 1) % cfg.val_every == 0 or is_last):
            metrics = _validate_epoch(run, val_entries, seg_config, device, epoch, fold_dir)
            row.update({f"val_{k}": v for k, v in metrics.items()})
        if _is_main():
            _append_csv(log_path, row)
            write_training_curve(log_path, fold_dir / "progress.png", f"fold {fold}")
            log.info("fold %d %s", fold, " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                                   for k, v in row.items()))  # fmt: skip
            if (epoch + 1) % cfg.checkpoint_every == 0 or is_last:
                _save_checkpoint(
                    ckpt_path, run.model, run.optimiser, run.scheduler, run.scaler, epoch, run.best
                )
        if dist.is_initialized():
            dist.barrier()
    best = run.best
    best["final_sha256"] = state_digest(run.model)
    if _is_main():
        if not (fold_dir / "best.safetensors").is_file():
            save_state_dict(run.model.state_dict(), fold_dir / "best.safetensors")
        export_weights(
            out_dir, dataclasses.replace(seg_config, train=cfg), fold, fold_dir / "best.safetensors"
        )
        write_json(json_ready(best), fold_dir / "best.json", indent=2)
    return best


def load_init_weights(model: torch.nn.Module, path: Path) -> None:
    """Load a safetensors file into ``model`` for fine-tuning. When a ``config.json`` beside it lists the file,
    its sha256 is checked (as :class:`hmvnet.segmentation.segmenter.Segmenter` does); weights that do not fit the model are a
    :class:`WeightsError` with torch's list of missing, unexpected and mis-shaped keys."""
    from safetensors.torch import load_file

    if not path.is_file():
        raise WeightsError(f"--init-weights {path}: file not found (expected a .safetensors file)")
    listed = {}
    if (path.parent / "config.json").is_file():
        listed = dict(load_config(SegmentationConfig, path.parent).weights)
    if path.name in listed:
        state = load_state_dict(path, listed[path.name])
    else:
        try:
            state = load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types for non-safetensors files
            raise WeightsError(f"--init-weights {path}: not a readable safetensors file ({exc})") from exc
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise WeightsError(
            f"--init-weights {path}: does not fit the configured model (use the model section of the config it "
            f"was trained with): {exc}"
        ) from exc


def state_digest(model: torch.nn.Module) -> str:
    """sha256 over a model's parameters and buffers (to compare ranks or runs)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _save_checkpoint(path: Path, model, optimiser, scheduler, scaler, epoch: int, best: dict) -> None:
    state = {
        "model": model.state_dict(),
        "optimiser": optimiser.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "epoch": epoch,
        "best": best,
        "rng": {
            "torch": torch.get_rng_state(),
            "numpy": np.random.get_state(),  # noqa: NPY002
            "python": random.getstate(),
        },
    }
    write_with(path, lambda tmp: torch.save(state, tmp))


def export_weights(out_dir: Path, seg_config: SegmentationConfig, fold: int, source: Path) -> Path:
    """Copy a fold's weights to ``out_dir/fold{k}.safetensors`` and record its sha256 in ``out_dir/config.json``
    (merging with folds exported before)."""
    from safetensors.torch import load_file

    name = f"fold{fold}.safetensors"
    digest = save_state_dict(load_file(str(source)), out_dir / name)
    weights = {}
    if (out_dir / "config.json").is_file():
        weights = dict(load_config(SegmentationConfig, out_dir).weights)
    weights[name] = digest
    save_config(dataclasses.replace(seg_config, weights=weights), out_dir)
    return out_dir / name


# ------------------------------------------------------------------------------------------ CLI
def build_configs(args: argparse.Namespace) -> tuple[SegmentationConfig, SegmentationTrainConfig]:
    seg = read_config_file(SegmentationConfig, Path(args.config)) if args.config else SegmentationConfig()
    train = seg.train
    overrides = {
        k: v
        for k, v in {
            "epochs": args.epochs,
            "samples_per_epoch": args.samples_per_epoch,
            "lr": args.lr,
            "batch_size": args.batch_size,
            "seed": args.seed,
            "val_every": args.val_every,
            "checkpoint_every": args.checkpoint_every,
            "num_workers": args.num_workers,
        }.items()
        if v is not None
    }
    train = dataclasses.replace(train, **overrides)
    return dataclasses.replace(seg, train=train), train


RUN_FILES = ("log.csv", "checkpoint_last.pt", "best.safetensors", "best.json", "progress.png")
"""The files of a fold's run in ``OUT/foldK/``; any of them present means the folder holds a run."""


def prepare_run_dirs(out_dir: Path, folds: Sequence[int], resume: bool, overwrite: bool) -> None:
    """Refuse to train into ``out_dir`` when a requested fold already holds a run, unless ``resume`` (continue
    it) or ``overwrite`` (its run files are deleted first, so no log rows or weights of the old run survive)."""
    held = {k: [n for n in RUN_FILES if (out_dir / f"fold{k}" / n).is_file()] for k in folds}
    held = {k: names for k, names in held.items() if names}
    if not held or resume:
        return
    if not overwrite:
        listing = "; ".join(f"fold{k}: {', '.join(names)}" for k, names in held.items())
        raise InputError(
            f"--out {out_dir} already holds a run ({listing}): give --resume to continue it or --overwrite to "
            "start afresh (deletes those files)"
        )
    for k, names in held.items():
        for name in names:
            (out_dir / f"fold{k}" / name).unlink()
        log.warning("--overwrite: removed the earlier run of fold %d (%s)", k, ", ".join(names))


def cli_main(argv: list[str]) -> int:
    from hmvnet.app.parsers import train_seg_parser

    args = train_seg_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    seg, train = build_configs(args)
    if _is_main():
        prepare_run_dirs(args.out, args.fold, args.resume, args.overwrite)
    val_ids = None
    if args.val_split:
        try:
            val_ids = list(json.loads(args.val_split.read_text())["val"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(
                f"--val-split {args.val_split}: expected a split.json with a 'val' list ({exc})"
            ) from exc
    for fold in args.fold:
        best = train_fold(
            args.data,
            args.out,
            seg,
            train,
            fold,
            args.cache or args.out / "cache",
            args.resume,
            val_ids=val_ids,
            init_weights=args.init_weights,
        )
        if _is_main():
            log.info("fold %d best: %s", fold, json.dumps(best))
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    import sys

    from hmvnet.app.cli import run_cli

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(run_cli(cli_main, sys.argv[1:]))
