"""Shared test helpers: synthetic images built from functions of physical coordinates."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch

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
