"""Radiomics: 2 048 features per case from CT, PET and a lesion label map (paper §3.3).

Feature vector (order is stable; :data:`FEATURE_NAMES` lists it without running an extraction):

1. for each of the 11 mask variants of :data:`hmvnet.survival.masks.MASK_VARIANTS` (in that order), for CT then PET,
   the 93 non-shape pyradiomics features of the original image, classes in the order firstorder (18), glcm (24),
   glrlm (16), glszm (16), gldm (14), ngtdm (5), features sorted by name within a class:
   ``<variant>_<CT|PET>_<class>_<feature>``, e.g. ``dil4_PET_glcm_Contrast`` (11 x 2 x 93 = 2 046);
2. ``count_gtvp``, ``count_gtvn``: numbers of 26-connected GTVp / GTVn components of at least
   ``RadiomicsConfig.min_component_mm3``.

The PET is used on the SUV-equivalent scale of :func:`hmvnet.survival.masks.pet_to_suv_equivalent` (invariant to a global
factor, so SUV and Bq/ml inputs of one patient give the same features). Discretisation uses fixed bin widths
(pyradiomics ``binWidth``; bins are aligned to multiples of the width): CT 25 HU (the pyradiomics default, suited to
HU), PET 0.25 suv_eq: lesion uptake spans roughly 2-20 on this scale, so 0.25 gives about 10-80 grey levels, enough
for texture without sparse matrices, whereas the default 25 would put a whole PET ROI into one bin.

A variant with fewer than ``min_mask_voxels`` voxels, or spanning fewer than 2 dimensions (pyradiomics'
``minimumROIDimensions``; it refuses such masks), gets NaN for its 186 features instead of an exception.

Fast path (same values as pyradiomics called on the full, uncropped images; tested to 1e-6): the PET is
normalised on the full grid, then CT, PET and label are cropped ONCE to the lesions' bounding box grown by the
largest dilation plus ``margin_voxels``; all variants are built on that crop (the crop holds every lesion voxel,
so the distance transform is exact there); each (variant, modality) pair, cut to that variant's own bounding
box plus ``margin_voxels``, is extracted by a pyradiomics
``RadiomicsFeatureExtractor`` with ``additionalInfo=False`` (no image hashing or diagnostics) and shape disabled,
in a process pool of ``workers`` processes (``workers=1`` runs inline). Segment-based pyradiomics only reads
voxels inside the mask's bounding box (its own crop pads by ``kernelRadius = 0`` for segment-based extraction),
so the crop cannot change a value; ``margin_voxels`` defaults to pyradiomics' ``padDistance`` (5) anyway.

Worker processes come from a forkserver (spawn where there is none), never a plain fork of a parent that may hold
torch or ITK threads; as with any such pool, a script calling :func:`extract_features` with ``workers > 1`` needs
the ``if __name__ == "__main__":`` guard. Pass ``executor=make_executor(n)`` to reuse one pool over many cases.
"""

from __future__ import annotations

import functools
import logging
import math
import multiprocessing
import os
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Executor, ProcessPoolExecutor

import numpy as np
import pandas as pd
import radiomics
import SimpleITK as sitk
from radiomics import featureextractor

from hmvnet.config import RadiomicsConfig
from hmvnet.geometry import assert_same_space
from hmvnet.survival.masks import (
    MASK_VARIANTS,
    bounding_box,
    build_mask_variants,
    count_components,
    max_reach_mm,
    pet_to_suv_equivalent,
)

FEATURE_CLASSES: tuple[str, ...] = ("firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")
"""pyradiomics feature classes used, in feature order (shape is excluded: it does not depend on the image)."""
MODALITIES: tuple[str, ...] = ("CT", "PET")
FEATURES_PER_MASK = 93
COUNT_NAMES: tuple[str, ...] = ("count_gtvp", "count_gtvn")

_LOGGER_NAME = "radiomics"
log = logging.getLogger(__name__)


def _class_feature_names() -> dict[str, tuple[str, ...]]:
    classes = radiomics.getFeatureClasses()
    names = {
        c: tuple(sorted(n for n, deprecated in classes[c].getFeatureNames().items() if not deprecated))
        for c in FEATURE_CLASSES
    }
    total = sum(len(v) for v in names.values())
    if total != FEATURES_PER_MASK:
        raise RuntimeError(
            f"pyradiomics {radiomics.__version__} gives {total} non-shape features per mask "
            f"({ {c: len(v) for c, v in names.items()} }); HM-VNet expects {FEATURES_PER_MASK} "
            "(pyradiomics-bhklab 3.1.4)"
        )
    return names


CLASS_FEATURE_NAMES: dict[str, tuple[str, ...]] = _class_feature_names()
"""Feature names per pyradiomics class, sorted, without the class prefix."""

MASK_FEATURE_NAMES: tuple[str, ...] = tuple(
    f"{c}_{n}" for c in FEATURE_CLASSES for n in CLASS_FEATURE_NAMES[c]
)
"""The 93 ``<class>_<feature>`` names extracted per (variant, modality)."""

FEATURE_NAMES: tuple[str, ...] = (
    *(f"{v.name}_{m}_{f}" for v in MASK_VARIANTS for m in MODALITIES for f in MASK_FEATURE_NAMES),
    *COUNT_NAMES,
)
"""All 2 048 feature names, in output order."""


def silence_pyradiomics() -> None:
    """Keep pyradiomics' logger to errors only (it logs every extraction step at INFO)."""
    radiomics.setVerbosity(logging.ERROR)
    logging.getLogger(_LOGGER_NAME).setLevel(logging.ERROR)


silence_pyradiomics()


def radiomics_settings(bin_width: float, additional_info: bool = False) -> dict[str, object]:
    """pyradiomics extractor settings used for one modality (all else pyradiomics defaults)."""
    return {"binWidth": float(bin_width), "additionalInfo": bool(additional_info), "label": 1}


def make_extractor(
    bin_width: float, additional_info: bool = False
) -> featureextractor.RadiomicsFeatureExtractor:
    """A pyradiomics extractor on the original image with the :data:`FEATURE_CLASSES` enabled, shape disabled."""
    extractor = featureextractor.RadiomicsFeatureExtractor(**radiomics_settings(bin_width, additional_info))
    extractor.disableAllFeatures()
    extractor.disableAllImageTypes()
    extractor.enableImageTypeByName("Original")
    for name in FEATURE_CLASSES:
        extractor.enableFeatureClassByName(name)
    return extractor


@functools.lru_cache(maxsize=8)
def _cached_extractor(bin_width: float) -> featureextractor.RadiomicsFeatureExtractor:
    return make_extractor(bin_width, additional_info=False)


def mask_is_extractable(mask: np.ndarray, min_voxels: int) -> bool:
    """True when pyradiomics accepts ``mask`` (>= ``min_voxels`` voxels spanning >= 2 dimensions)."""
    if int(np.count_nonzero(mask)) < max(int(min_voxels), 1):
        return False
    box = bounding_box(np.asarray(mask, dtype=bool))
    assert box is not None
    return sum((s.stop - s.start) > 1 for s in box) >= 2


def parse_pyradiomics_result(result: dict[str, object], prefix: str = "original_") -> dict[str, float]:
    """``{<class>_<feature>: value}`` for the :data:`MASK_FEATURE_NAMES` from a pyradiomics result.

    Raises:
        RuntimeError: the result does not hold exactly the expected features (a pyradiomics version change).
    """
    values = {k[len(prefix) :]: float(v) for k, v in result.items() if k.startswith(prefix)}  # type: ignore[arg-type]
    if set(values) != set(MASK_FEATURE_NAMES):
        missing = sorted(set(MASK_FEATURE_NAMES) - set(values))[:5]
        extra = sorted(set(values) - set(MASK_FEATURE_NAMES))[:5]
        raise RuntimeError(f"pyradiomics returned unexpected features (missing {missing}, extra {extra})")
    return values


def _array_to_image(array: np.ndarray, spacing_xyz: tuple[float, ...]) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing([float(s) for s in spacing_xyz])
    return image


def _extract_pair(
    image: np.ndarray, mask: np.ndarray, spacing_xyz: tuple[float, ...], bin_width: float
) -> dict[str, float]:
    """Worker: the 93 features of one (mask, image) pair, arrays ``(z, y, x)`` on the same grid."""
    silence_pyradiomics()
    extractor = _cached_extractor(float(bin_width))
    result = extractor.execute(
        _array_to_image(image, spacing_xyz), _array_to_image(mask.astype(np.uint8), spacing_xyz), label=1
    )
    return parse_pyradiomics_result(result)


def _pool_context() -> multiprocessing.context.BaseContext:
    # Never fork a parent that may hold torch/ITK thread pools; a forkserver (preloaded with this module) makes
    # later pools cheap, spawn is the portable fallback.
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([__name__])
        return ctx
    return multiprocessing.get_context("spawn")


def make_executor(workers: int) -> ProcessPoolExecutor:
    """A process pool suited to :func:`extract_features`; reuse it over many cases to start workers once.

    Its workers exit on their own when the process that made the pool dies (even by SIGKILL), instead of
    waiting forever on the pool's queue.
    """
    return ProcessPoolExecutor(
        max_workers=max(1, int(workers)),
        mp_context=_pool_context(),
        initializer=_start_parent_watch,
        initargs=(os.getpid(),),
    )


def _start_parent_watch(parent_pid: int) -> None:
    silence_pyradiomics()

    def watch() -> None:
        while True:
            time.sleep(1.0)
            try:
                os.kill(parent_pid, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:  # the pid was reused by another user's process: ours is gone
                os._exit(1)

    threading.Thread(target=watch, name="hmvnet-parent-watch", daemon=True).start()


def _grow(box: tuple[slice, ...] | None, voxels: int, shape: tuple[int, ...]) -> tuple[slice, ...]:
    assert box is not None
    return tuple(slice(max(s.start - voxels, 0), min(s.stop + voxels, n)) for s, n in zip(box, shape))


def _crop_box(lesions: np.ndarray, spacing_xyz: tuple[float, ...], margin_voxels: int) -> tuple[slice, ...]:
    box = bounding_box(lesions)
    assert box is not None
    reach_mm = max_reach_mm()
    spacing_zyx = tuple(reversed(spacing_xyz))
    out = []
    for s, sp, n in zip(box, spacing_zyx, lesions.shape):
        grow = math.ceil(reach_mm / float(sp)) + int(margin_voxels)
        out.append(slice(max(s.start - grow, 0), min(s.stop + grow, n)))
    return tuple(out)


def extract_features(
    ct: sitk.Image,
    pet: sitk.Image,
    label: sitk.Image,
    config: RadiomicsConfig | None = None,
    executor: Executor | None = None,
    suv_factor: float | None = None,
) -> pd.Series:
    """All 2 048 radiomics features of one case.

    Args:
        ct: CT in HU.
        pet: PET in SUV or Bq/ml (any global scale); converted to suv_eq, or to SUV with ``suv_factor``.
        label: label map (0 background, ``gtvp_label``, ``gtvn_label``); all three on one common grid.
        config: settings (default :class:`RadiomicsConfig`).
        executor: optional process pool (see :func:`make_executor`) reused across cases; without it a pool of
            ``config.workers`` processes is made for this call (none when ``workers == 1``).
        suv_factor: SUV per PET unit from the DICOM headers; when known it replaces the body-median estimate.

    Returns:
        float64 Series indexed by :data:`FEATURE_NAMES`; NaN for variants too small to extract, counts >= 0.

    Raises:
        ValueError: the images are not on one grid, or the PET cannot be normalised (no body, median <= 0).
    """
    config = config or RadiomicsConfig()
    assert_same_space(ct=ct, pet=pet, label=label)
    spacing = tuple(float(s) for s in ct.GetSpacing())
    ct_arr = sitk.GetArrayViewFromImage(ct)
    suv_eq = pet_to_suv_equivalent(
        sitk.GetArrayViewFromImage(pet), ct_arr, config.reference_body_suv, config.body_hu, suv_factor
    )
    label_arr = sitk.GetArrayViewFromImage(label)
    lesion_labels = (config.gtvp_label, config.gtvn_label)
    lesions = np.isin(label_arr, lesion_labels)

    out = pd.Series(np.nan, index=pd.Index(FEATURE_NAMES), dtype=np.float64)
    out[list(COUNT_NAMES)] = 0.0
    if not lesions.any():
        return out

    crop = _crop_box(lesions, spacing, config.margin_voxels)
    ct_c = np.ascontiguousarray(ct_arr[crop])
    pet_c = np.ascontiguousarray(suv_eq[crop])
    label_c = np.ascontiguousarray(label_arr[crop])
    del suv_eq
    variants = build_mask_variants(label_c, pet_c, spacing, lesion_labels=lesion_labels)
    out["count_gtvp"] = count_components(label_c == config.gtvp_label, spacing, config.min_component_mm3)
    out["count_gtvn"] = count_components(label_c == config.gtvn_label, spacing, config.min_component_mm3)

    jobs = []
    for name, mask in variants.items():
        if not mask_is_extractable(mask, config.min_mask_voxels):
            continue
        if int(np.count_nonzero(mask)) > config.max_mask_voxels:
            log.warning("radiomics: variant %s has %d voxels > max_mask_voxels=%d: its features are NaN",
                        name, int(np.count_nonzero(mask)), config.max_mask_voxels)  # fmt: skip
            continue
        # Each job gets only its mask's box (+ margin): less to send to a worker and for pyradiomics to scan.
        box = _grow(bounding_box(mask), config.margin_voxels, mask.shape)
        for modality, image, width in (
            ("CT", ct_c, config.ct_bin_width),
            ("PET", pet_c, config.pet_bin_width),
        ):
            width = bounded_bin_width(
                image[box][mask[box]], width, config.max_grey_levels, f"{name}_{modality}"
            )
            jobs.append((f"{name}_{modality}", image[box], mask[box], width, int(np.count_nonzero(mask))))
    # Largest masks first, so the pool does not finish on one long job.
    jobs.sort(key=lambda job: -job[4])
    for prefix, values in _run_jobs(jobs, spacing, config.workers, executor):
        out[[f"{prefix}_{k}" for k in MASK_FEATURE_NAMES]] = [values[k] for k in MASK_FEATURE_NAMES]
    return out


def bounded_bin_width(values: np.ndarray, width: float, max_levels: int, what: str = "") -> float:
    """``width``, or the width that keeps the pyradiomics bins (aligned to multiples of the width) of ``values``
    at most ``max_levels`` (logged); a non-finite range keeps ``width`` (pyradiomics then fails on its own)."""
    if values.size == 0:
        return width
    low, high = float(values.min()), float(values.max())
    if not (np.isfinite(low) and np.isfinite(high)):
        return width
    levels = math.floor(high / width) - math.floor(low / width) + 1
    if levels <= max_levels:
        return width
    wider = (high - low) / (max_levels - 2)
    log.warning("radiomics %s: range %g..%g needs %d bins of %g; bin width widened to %g (max_grey_levels=%d)",
                what, low, high, levels, width, wider, max_levels)  # fmt: skip
    return float(wider)


def _run_jobs(
    jobs: list[tuple[str, np.ndarray, np.ndarray, float, int]],
    spacing: tuple[float, ...],
    workers: int,
    executor: Executor | None,
) -> Iterable[tuple[str, dict[str, float]]]:
    if not jobs:
        return []
    if executor is None and workers <= 1:
        return [(p, _extract_pair(img, m, spacing, w)) for p, img, m, w, _ in jobs]
    own = executor is None
    pool = executor if executor is not None else make_executor(min(workers, len(jobs)))
    try:
        futures = [(p, pool.submit(_extract_pair, img, m, spacing, w)) for p, img, m, w, _ in jobs]
        return [(p, f.result()) for p, f in futures]
    finally:
        if own:
            pool.shutdown(wait=True, cancel_futures=True)
