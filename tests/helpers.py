"""Shared test helpers (import them as ``from tests.helpers import ...``): synthetic images built from functions
of physical coordinates, a tiny HECKTOR-layout cohort with known lesions, and tiny configurations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from hmvnet.config import (
    InferenceConfig,
    ModelConfig,
    PreprocessConfig,
    SegmentationConfig,
    SegmentationTrainConfig,
)


def physical_grid(size, spacing, origin, direction=(1, 0, 0, 0, 1, 0, 0, 0, 1)):
    """Physical coordinates (x, y, z) in mm of every voxel, each as a (z, y, x) array."""
    idx = np.indices(tuple(reversed(size)), dtype=np.float64)  # (3, z, y, x): k, j, i
    ijk = np.stack([idx[2], idx[1], idx[0]])  # i (x index), j, k
    d = np.asarray(direction, dtype=np.float64).reshape(3, 3)
    scaled = ijk * np.asarray(spacing, dtype=np.float64)[:, None, None, None]
    pts = np.tensordot(d, scaled, axes=1) + np.asarray(origin, dtype=np.float64)[:, None, None, None]
    return pts[0], pts[1], pts[2]


def image_from_function(fn, size, spacing, origin, direction=(1, 0, 0, 0, 1, 0, 0, 0, 1), dtype=np.float32):
    """An sitk.Image whose voxel values are ``fn(x, y, z)`` at the voxels' physical positions."""
    x, y, z = physical_grid(size, spacing, origin, direction)
    image = sitk.GetImageFromArray(np.asarray(fn(x, y, z), dtype=dtype))
    image.SetSpacing([float(s) for s in spacing])
    image.SetOrigin([float(o) for o in origin])
    image.SetDirection([float(v) for v in direction])
    return image


def origin_for_direction(centre, size, spacing, direction):
    """The origin that puts the image centre at ``centre`` (mm) for a given direction."""
    d = np.asarray(direction, dtype=float).reshape(3, 3)
    half = (np.asarray(size) - 1) / 2.0 * np.asarray(spacing)
    return tuple(np.asarray(centre, dtype=float) - d @ half)


def write_tiny_cohort(root, n_cases=6, centres=("CHUM", "MDA"), seed=0):
    """A tiny HECKTOR-layout cohort (``root/Task 1/<PID>/...``): 48x48x40 CT at 3 mm, PET at 4 mm on another grid,
    a brain at z = +20 mm, a GTVp sphere and one GTVn sphere per case at random positions (known answers)."""
    import pathlib

    rng = np.random.default_rng(seed)
    root = pathlib.Path(root)
    ids = []
    for i in range(n_cases):
        pid = f"{centres[i % len(centres)]}-{i:03d}"
        ids.append(pid)
        p = np.array([rng.uniform(-20, 20), rng.uniform(-20, 10), rng.uniform(-50, -25)])
        q = p + np.array([rng.choice([-35.0, 35.0]), 10.0, rng.uniform(-10, 10)])
        rp, rq = rng.uniform(9, 13), rng.uniform(5, 7)

        def dist(x, y, z, c):
            return np.sqrt((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2)

        def lab(x, y, z, p=p, q=q, rp=rp, rq=rq):
            out = np.zeros(np.shape(x), np.uint8)
            out[dist(x, y, z, q) <= rq] = 2
            out[dist(x, y, z, p) <= rp] = 1
            return out

        def ct_fn(x, y, z, lab=lab):
            body = (x / 70) ** 2 + (y / 60) ** 2 <= 1
            return np.where(body, 40.0, -1000.0) + 20.0 * (lab(x, y, z) > 0)

        def pet_fn(x, y, z, lab=lab):
            body = (x / 70) ** 2 + (y / 60) ** 2 <= 1
            brain = np.sqrt(x**2 + y**2 + (z - 20) ** 2) <= 18
            return 1.0 * body + 8.0 * brain + 9.0 * (lab(x, y, z) > 0)

        size, spacing = (48, 48, 40), (3.0, 3.0, 3.0)
        origin = (-70.5, -70.5, -80.0)
        case = root / "Task 1" / pid
        case.mkdir(parents=True)
        sitk.WriteImage(image_from_function(ct_fn, size, spacing, origin), str(case / f"{pid}__CT.nii.gz"))
        sitk.WriteImage(
            image_from_function(pet_fn, (36, 36, 32), (4.0, 4.0, 4.0), (-72.0, -70.0, -78.0)),
            str(case / f"{pid}__PT.nii.gz"),
        )
        sitk.WriteImage(
            image_from_function(lab, size, spacing, origin, dtype=np.uint8), str(case / f"{pid}.nii.gz")
        )
    return ids


# ------------------------------------------------------------------------------------ tiny configurations

TINY = SegmentationConfig(
    preprocess=PreprocessConfig(
        spacing_mm=(3.0, 3.0, 3.0), crop_size_mm=(120.0, 120.0, 96.0), crop_centre_offset_mm=(0.0, 0.0, -50.0)
    ),
    model=ModelConfig(stem_channels=4, feature_size=6, window_size=(4, 4, 4), use_flash_attention=True),
    inference=InferenceConfig(roi_size=(32, 32, 32), overlap=0.25),
)
TRAIN = SegmentationTrainConfig(epochs=3, samples_per_epoch=2, batch_size=1, lr=1e-3, val_every=1, checkpoint_every=1,
                    n_folds=3, elastic_prob=0.0)  # fmt: skip


SURVIVAL_CONFIG = {
    "fusion": {"crop_size": [16, 16, 16], "resnet_widths": [4, 8, 8, 8], "image_dim": 8, "clinical_hidden": [8],
               "clinical_dim": 4, "radiomics_dim": 2048, "fusion_hidden": [16], "fused_dim": 8, "n_bins": 2,
               "projection_dim": 4},
    "radiomics": {"workers": 1},
    "train": {"rounds": 1, "epochs_per_round": 1, "batch_size": 4, "n_folds": 2, "icare_estimators": 5},
}  # fmt: skip


REPO = Path(__file__).resolve().parents[1]
"""The repository root (process.py, test/, scripts/ live there)."""
