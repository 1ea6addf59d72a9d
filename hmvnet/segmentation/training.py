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
import csv
import dataclasses
import hashlib
import json
import logging
import math
import os
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from monai import transforms as mt
from monai.losses import DiceCELoss
from tqdm import tqdm

from hmvnet.config import (
    PreprocessConfig,
    SegmentationConfig,
    SegmentationTrainConfig,
    load_config,
    read_config_file,
    save_config,
    to_dict,
)
from hmvnet.data.cases import discover_cases, read_training_case
from hmvnet.data.folds import centre_folds
from hmvnet.data.weights import load_state_dict, save_state_dict
from hmvnet.data.writers import json_ready, write_json, write_with
from hmvnet.errors import InputError, WeightsError

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------ cache
def cache_key(config: PreprocessConfig) -> str:
    return hashlib.sha256(json.dumps(to_dict(config), sort_keys=True).encode()).hexdigest()[:12]


def build_cache(
    data_dir: Path, cache_dir: Path, config: PreprocessConfig, case_ids: Sequence[str] | None = None
) -> dict[str, Path]:
    """Preprocess every labelled case once; returns case ID -> cache folder. Existing entries are reused."""
    from hmvnet.segmentation.preprocessing import preprocess

    root = cache_dir / cache_key(config)
    root.mkdir(parents=True, exist_ok=True)
    write_json(to_dict(config), root / "preprocess.json", indent=2)
    folders = {p.name: p for p in discover_cases(data_dir)}
    if not folders:
        raise InputError(
            f"no cases found under {data_dir} (expected the HECKTOR layout 'Task 1/<PID>/<PID>__CT.nii.gz')"
        )
    wanted = sorted(folders) if case_ids is None else list(case_ids)
    out = {}
    for case_id in tqdm(wanted, desc="cache", disable=not _is_main()):
        entry = root / case_id
        if not (entry / "label.npy").is_file():
            case = read_training_case(folders[case_id])
            if case.label is None:
                log.warning("%s has no label: skipped", case_id)
                continue
            pre = preprocess(case.ct, case.pet, config, label=case.label)
            import SimpleITK as sitk

            entry.mkdir(exist_ok=True)
            image = pre.image.astype(np.float16)
            _save_npy(entry / "image.npy", image)
            assert pre.label is not None  # a label was passed to preprocess
            geometry = {
                "spacing": pre.ct_hu.GetSpacing(),
                "origin": pre.ct_hu.GetOrigin(),
                "size": pre.ct_hu.GetSize(),
            }
            write_json(json_ready(geometry), entry / "geometry.json")
            label = sitk.GetArrayFromImage(pre.label).astype(np.uint8)
            _save_npy(entry / "label.npy", label)  # written last: marks a complete entry
        out[case_id] = entry
    return out


def _save_npy(path: Path, array: np.ndarray) -> None:
    write_with(path, lambda tmp: np.save(tmp, array))


def _load_entry(entry: Path) -> dict[str, np.ndarray]:
    image = np.load(entry / "image.npy").astype(np.float32)
    label = np.load(entry / "label.npy")[None]
    return {"image": image, "label": label}


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
        sample = self.transform(_load_entry(self.entries[int(self.order[index])]))
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
        data = _load_entry(entry)
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
    up by ``resume`` wins over it."""
    from hmvnet.segmentation.network import build_model

    rank, world, device = _setup_distributed()
    fold_dir = out_dir / f"fold{fold}"
    if _is_main():
        fold_dir.mkdir(parents=True, exist_ok=True)
    entries = build_cache(data_dir, cache_dir, seg_config.preprocess) if _is_main() else {}
    if dist.is_initialized():
        dist.barrier()
        if not _is_main():
            entries = build_cache(data_dir, cache_dir, seg_config.preprocess)
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
    val_entries = {c: entries[c] for c in sorted(val_set)}
    if not train_entries:
        raise InputError(f"fold {fold} leaves no training cases ({len(entries)} cases in {data_dir})")
    if _is_main():
        split = {"train": sorted(set(entries) - val_set), "val": sorted(val_set)}
        write_json(split, fold_dir / "split.json", indent=1)

    _seed_everything(cfg.seed)
    model = build_model(seg_config.model).to(device)
    if init_weights is not None:
        load_init_weights(model, Path(init_weights))
        log.info("fold %d starts from %s", fold, init_weights)
    optimiser, scheduler = _make_optimiser(model, cfg)
    use_amp = device.type == "cuda" and seg_config.inference.amp
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, lambda_dice=0.5, lambda_ce=0.5)
    start_epoch, best = 0, {"score": -1.0}
    ckpt_path = fold_dir / "checkpoint_last.pt"
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

    transform = train_transforms(seg_config.inference.roi_size, cfg)
    log_path = fold_dir / "log.csv"
    end_epoch = cfg.epochs if max_epochs is None else min(cfg.epochs, max_epochs)
    for epoch in range(start_epoch, end_epoch):
        epoch_seed = cfg.seed * 100_003 + epoch * 1009 + rank
        _seed_everything(epoch_seed)
        transform.set_random_state(seed=epoch_seed % 2**32)
        per_rank = max(cfg.batch_size, cfg.samples_per_epoch // world)
        dataset = PatchDataset(train_entries, per_rank, transform, epoch_seed)
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=cfg.batch_size,
            shuffle=False,
            num_workers=cfg.num_workers,
            generator=torch.Generator().manual_seed(epoch_seed),
        )
        net.train()
        losses, t0 = [], time.perf_counter()
        bar = tqdm(
            loader, desc=f"fold {fold} epoch {epoch + 1}/{cfg.epochs}", disable=not _is_main(), leave=False
        )
        for batch in bar:
            image, label = batch["image"].to(device), batch["label"].to(device)
            optimiser.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                loss = loss_fn(net(image), label)
            scaler.scale(loss).backward()
            scaler.step(optimiser)
            scaler.update()
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{np.mean(losses):.4f}")
        scheduler.step()
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": float(np.mean(losses)),
            "lr": optimiser.param_groups[0]["lr"],
            "epoch_s": time.perf_counter() - t0,
        }
        is_last = epoch + 1 == end_epoch
        if _is_main() and val_entries and ((epoch + 1) % cfg.val_every == 0 or is_last):
            model.eval()
            metrics = validate(model, val_entries, seg_config, device)
            row.update({f"val_{k}": v for k, v in metrics.items()})
            score = selection_score(metrics)
            if score > best["score"]:
                best = {"score": score, "epoch": epoch + 1, **metrics}
                save_state_dict(model.state_dict(), fold_dir / "best.safetensors")
        if _is_main():
            _append_csv(log_path, row)
            log.info(
                "fold %d %s",
                fold,
                " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
            )
            if (epoch + 1) % cfg.checkpoint_every == 0 or is_last:
                _save_checkpoint(ckpt_path, model, optimiser, scheduler, scaler, epoch, best)
        if dist.is_initialized():
            dist.barrier()
    best["final_sha256"] = state_digest(model)  # type: ignore[assignment]  # best holds metrics and this digest
    if _is_main():
        if not (fold_dir / "best.safetensors").is_file():
            save_state_dict(model.state_dict(), fold_dir / "best.safetensors")
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


def _append_csv(path: Path, row: dict[str, Any]) -> None:
    """Append ``row`` to the CSV log; a row with new columns (validation epochs) rewrites the header."""
    rows: list[dict[str, Any]] = []
    fields = list(row)
    if path.is_file():
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            header = list(reader.fieldnames or [])
        fields = header + [k for k in row if k not in header]
        if fields == header:
            with open(path, "a", newline="") as handle:
                csv.DictWriter(handle, fieldnames=fields).writerow(row)
            return

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows([*rows, row])

    write_with(path, write)


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


def cli_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="hmvnet train-seg", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=Path, required=True, help="HECKTOR 2025 training folder (holding 'Task 1')"
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="output folder: config.json + fold*.safetensors"
    )
    parser.add_argument("--fold", type=int, nargs="+", default=[0], help="fold(s) to train (default 0)")
    parser.add_argument(
        "--config", type=Path, help="JSON with SegmentationConfig sections and a 'train' section"
    )
    parser.add_argument("--cache", type=Path, default=None, help="preprocessing cache (default OUT/cache)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/foldK/checkpoint_last.pt")
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
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--samples-per-epoch", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--val-every", type=int)
    parser.add_argument("--checkpoint-every", type=int)
    parser.add_argument("--num-workers", type=int)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    seg, train = build_configs(args)
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
