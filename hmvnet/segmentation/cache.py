"""The preprocessing cache of ``hmvnet train-seg``: every labelled case preprocessed once, as ``image.npy``
(float16, ``(2, z, y, x)``: CT, PET), ``label.npy`` (uint8, ``(z, y, x)``) and ``geometry.json`` (crop-grid
spacing/origin/size in mm, SimpleITK order), under a folder keyed by a hash of the preprocessing configuration."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from hmvnet.config import PreprocessConfig, to_dict
from hmvnet.data.cases import discover_cases, read_training_case
from hmvnet.data.writers import json_ready, write_json, write_with
from hmvnet.errors import InputError

log = logging.getLogger(__name__)


def cache_key(config: PreprocessConfig) -> str:
    return hashlib.sha256(json.dumps(to_dict(config), sort_keys=True).encode()).hexdigest()[:12]


def build_cache(
    data_dir: Path,
    cache_dir: Path,
    config: PreprocessConfig,
    case_ids: Sequence[str] | None = None,
    progress: bool = True,
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
    for case_id in tqdm(wanted, desc="cache", disable=not progress):
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
            save_npy(entry / "image.npy", image)
            assert pre.label is not None  # a label was passed to preprocess
            geometry = {
                "spacing": pre.ct_hu.GetSpacing(),
                "origin": pre.ct_hu.GetOrigin(),
                "size": pre.ct_hu.GetSize(),
            }
            write_json(json_ready(geometry), entry / "geometry.json")
            label = sitk.GetArrayFromImage(pre.label).astype(np.uint8)
            save_npy(entry / "label.npy", label)  # written last: marks a complete entry
        out[case_id] = entry
    return out


def save_npy(path: Path, array: np.ndarray) -> None:
    write_with(path, lambda tmp: np.save(tmp, array))


def load_entry(entry: Path) -> dict[str, np.ndarray]:
    image = np.load(entry / "image.npy").astype(np.float32)
    label = np.load(entry / "label.npy")[None]
    return {"image": image, "label": label}
