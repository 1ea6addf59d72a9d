"""Shared test helpers: synthetic images built from functions of physical coordinates."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from hmvnet.config import InferenceConfig, ModelConfig, PreprocessConfig, SegmentationConfig
from hmvnet.training import TrainConfig, train_fold

torch.set_num_threads(1)


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


@pytest.fixture
def head_neck_pair():
    """A CT (anisotropic, flipped x/y) and a PET (coarser, other origin) of a 'patient' with a brain at z=+80 mm
    and a 'tumour' sphere of radius 12 mm at (10, -5, -60) mm."""
    tumour = np.array([10.0, -5.0, -60.0])
    brain = np.array([0.0, 0.0, 80.0])

    def body(x, y, z):
        return ((x / 90) ** 2 + (y / 80) ** 2) <= 1.0

    def ct_fn(x, y, z):
        hu = np.where(body(x, y, z), 40.0, -1000.0)
        r = np.sqrt((x - tumour[0]) ** 2 + (y - tumour[1]) ** 2 + (z - tumour[2]) ** 2)
        return np.where(r <= 12.0, 70.0, hu)

    def pet_fn(x, y, z):
        suv = np.where(body(x, y, z), 1.0, 0.0)
        rb = np.sqrt((x - brain[0]) ** 2 + (y - brain[1]) ** 2 + ((z - brain[2]) / 0.8) ** 2)
        suv = np.where(rb <= 50, 9.0, suv)
        r = np.sqrt((x - tumour[0]) ** 2 + (y - tumour[1]) ** 2 + (z - tumour[2]) ** 2)
        return np.where(r <= 12.0, 12.0, suv)

    ct_dir = (-1, 0, 0, 0, -1, 0, 0, 0, 1)
    ct_size, ct_sp = (120, 110, 100), (1.9, 1.9, 3.0)
    ct = image_from_function(
        ct_fn, ct_size, ct_sp, origin_for_direction((0, 0, -20), ct_size, ct_sp, ct_dir), ct_dir
    )
    pet_size, pet_sp = (64, 60, 80), (4.0, 4.0, 4.0)
    pet = image_from_function(
        pet_fn,
        pet_size,
        pet_sp,
        origin_for_direction((3, 2, 0), pet_size, pet_sp, (1, 0, 0, 0, 1, 0, 0, 0, 1)),
    )

    def label_fn(x, y, z):
        r = np.sqrt((x - tumour[0]) ** 2 + (y - tumour[1]) ** 2 + (z - tumour[2]) ** 2)
        return (r <= 12.0).astype(np.uint8)

    label = image_from_function(label_fn, ct_size, ct_sp, ct.GetOrigin(), ct_dir, dtype=np.uint8)
    return {"ct": ct, "pet": pet, "label": label, "tumour": tumour, "brain": brain}


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
TRAIN = TrainConfig(epochs=3, samples_per_epoch=2, batch_size=1, lr=1e-3, val_every=1, checkpoint_every=1,
                    n_folds=3, elastic_prob=0.0)  # fmt: skip


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("weights")
    write_tiny_cohort(tmp / "data", n_cases=4)
    train_fold(tmp / "data", tmp / "w" / "segmentation", TINY, TRAIN, 0, tmp / "cache", max_epochs=1)
    return tmp / "w"


@pytest.fixture
def gc_input(tmp_path):
    write_tiny_cohort(tmp_path / "data", n_cases=1, seed=5)
    case = next((tmp_path / "data" / "Task 1").iterdir())
    root = tmp_path / "input"
    for sub, name in (("ct", "__CT"), ("pet", "__PT")):
        (root / "images" / sub).mkdir(parents=True)
        image = sitk.ReadImage(str(case / f"{case.name}{name}.nii.gz"))
        sitk.WriteImage(image, str(root / "images" / sub / f"{sub}-uuid.mha"), useCompression=True)
    (root / "ehr.json").write_text(json.dumps({"Age": 60, "Gender": 1}))
    return root


SURVIVAL_CONFIG = {
    "fusion": {"crop_size": [16, 16, 16], "resnet_widths": [4, 8, 8, 8], "image_dim": 8, "clinical_hidden": [8],
               "clinical_dim": 4, "radiomics_dim": 2048, "fusion_hidden": [16], "fused_dim": 8, "n_bins": 2,
               "projection_dim": 4},
    "radiomics": {"workers": 1},
    "train": {"rounds": 1, "epochs_per_round": 1, "batch_size": 4, "n_folds": 2, "icare_estimators": 5},
}  # fmt: skip


@pytest.fixture(scope="session")
def full_weights(tiny_weights, tmp_path_factory):
    """Tiny segmentation weights plus tiny survival weights trained on ground-truth masks of a tiny cohort."""
    from hmvnet.survival_training import cli_main

    tmp = tmp_path_factory.mktemp("survival")
    ids = write_tiny_cohort(tmp / "data", n_cases=8, seed=11)
    rng = np.random.default_rng(0)
    rows = [{"PatientID": pid, "Age": 50 + i, "Gender": i % 2, "RFS": 100 + 50 * i, "Relapse": int(i % 2 == 0)}
            for i, pid in enumerate(ids)]  # fmt: skip
    rng.shuffle(rows)
    import pandas as pd

    pd.DataFrame(rows).to_csv(tmp / "data" / "HECKTOR_2025_Training_Task_2.csv", index=False)
    (tmp / "survival.json").write_text(json.dumps(SURVIVAL_CONFIG))
    weights = tmp / "w"
    shutil.copytree(tiny_weights, weights)
    argv = ["--data", str(tmp / "data"), "--out", str(weights / "survival"), "--seg-weights",
            str(weights / "segmentation"), "--gt-masks", "--config", str(tmp / "survival.json")]  # fmt: skip
    assert cli_main(argv) == 0
    return weights
