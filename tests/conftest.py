"""pytest fixtures shared by the test packages; plain helpers live in tests/helpers.py."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from hmvnet.segmentation.training import train_fold
from tests.helpers import (
    SURVIVAL_CONFIG,
    TINY,
    TRAIN,
    image_from_function,
    origin_for_direction,
    write_tiny_cohort,
)

torch.set_num_threads(1)


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


@pytest.fixture(scope="session")
def full_weights(tiny_weights, tmp_path_factory):
    """Tiny segmentation weights plus tiny survival weights trained on ground-truth masks of a tiny cohort."""
    from hmvnet.survival.training import cli_main

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


@pytest.fixture(scope="session")
def dicom_tree(tmp_path_factory):
    """A synthetic DICOM export tree (hmvnet.synthetic.dicom): 6 studies of 3 patients, 64x64x40 CT, with
    truth.json (kind, true SUV factor, label file per case id). Read-only: copy it before changing files."""
    from hmvnet.synthetic.dicom import write_tree

    root = tmp_path_factory.mktemp("dicom")
    truth = write_tree(root, n_studies=6, seed=3)
    return root, truth
