"""Tests of the synthetic PET/CT cohort generator (hmvnet.synthetic.cohort): layout, determinism, geometry, truth, hazard."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from hmvnet.data.task2 import TASK2_CSV
from hmvnet.synthetic.cohort import (
    CLINICAL_KEYS,
    CSV_COLUMNS,
    MISSING_RATE,
    TRUTH_NAME,
    case_pid,
    case_seed,
    draw_case,
    generate_case,
    generate_cohort,
    save_preview,
    write_gc_case,
)
from hmvnet.synthetic.phantom import grid_covering
from tests.helpers import REPO

torch.set_num_threads(1)
sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)

IDENTITY = (1, 1, 1)


def _geometry(image: sitk.Image) -> tuple:
    return image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection()


def _physical_points(image: sitk.Image) -> np.ndarray:
    """(z, y, x, 3) physical coordinates (mm) of every voxel centre, through SimpleITK's own geometry."""
    k, j, i = np.indices(sitk.GetArrayViewFromImage(image).shape)
    ijk = np.stack([i, j, k], axis=-1) * np.asarray(image.GetSpacing())
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    return ijk @ direction.T + np.asarray(image.GetOrigin())


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort")
    generate_cohort(root / "a", 3, seed=11, size="small", workers=1)
    generate_cohort(root / "b", 3, seed=11, size="small", workers=2)
    return root


def test_grid_covering_matches_sitk_geometry():
    grid = grid_covering((-10.0, -20.0, -30.0), (10.0, 20.0, 30.0), (2.0, 4.0, 3.0), (-1, 1, -1))
    image = grid.image(np.zeros(grid.size[::-1], np.float32))
    x, y, z = grid.axes()
    for idx in [(0, 0, 0), (3, 5, 7), (grid.size[0] - 1, grid.size[1] - 1, grid.size[2] - 1)]:
        assert np.allclose(image.TransformIndexToPhysicalPoint(idx), (x[idx[0]], y[idx[1]], z[idx[2]]))
    assert math.isclose(x.max(), 10.0) and math.isclose(z.min(), -30.0)


def test_cohort_layout_and_csv_columns(cohort):
    a = cohort / "a"
    with (a / TASK2_CSV).open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = list(reader)
    assert tuple(header) == CSV_COLUMNS
    assert len(rows) == 3
    for row in rows:
        pid = row[0]
        centre, number = pid.split("-")
        assert centre.isalpha() and len(number) == 3
        t1, t2 = a / "Task 1" / pid, a / "Task 2" / pid
        assert sorted(p.name for p in t1.iterdir()) == sorted(
            [f"{pid}__CT.nii.gz", f"{pid}__PT.nii.gz", f"{pid}.nii.gz"]
        )
        assert sorted(p.name for p in t2.iterdir()) == sorted([f"{pid}__CT.nii.gz", f"{pid}__PT.nii.gz"])
        assert (t2 / f"{pid}__CT.nii.gz").read_bytes() == (t1 / f"{pid}__CT.nii.gz").read_bytes()
        assert int(row[CSV_COLUMNS.index("RFS")]) > 0 and row[CSV_COLUMNS.index("Relapse")] in {"0", "1"}
        assert row[CSV_COLUMNS.index("M-stage")] in {"", "M0", "M1", "Mx"}
    with (a / TRUTH_NAME).open(newline="") as f:
        truth = list(csv.DictReader(f))
    assert [t["PatientID"] for t in truth] == [r[0] for r in rows]
    assert {"true_risk", "pet_units", "pet_scale", "gtvp_volume_ml", "gtvn_count", "suv_max"} <= set(truth[0])


def test_cohort_is_deterministic_across_workers(cohort):
    files_a = sorted(p.relative_to(cohort / "a") for p in (cohort / "a").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(cohort / "b") for p in (cohort / "b").rglob("*") if p.is_file())
    assert files_a == files_b and len(files_a) == 3 * 5 + 2
    for rel in files_a:
        assert (cohort / "a" / rel).read_bytes() == (cohort / "b" / rel).read_bytes(), rel


def test_start_index_extends_cohort_with_identical_cases(cohort, tmp_path):
    generate_cohort(tmp_path, 1, seed=11, start_index=2, size="small")
    pid = case_pid(11, 2)
    for name in (f"{pid}__CT.nii.gz", f"{pid}.nii.gz", f"{pid}__PT.nii.gz"):
        assert (tmp_path / "Task 1" / pid / name).read_bytes() == (
            cohort / "a" / "Task 1" / pid / name
        ).read_bytes()
    generate_cohort(tmp_path, 1, seed=11, start_index=0, size="small")
    with (tmp_path / TASK2_CSV).open(newline="") as f:
        assert [r["PatientID"] for r in csv.DictReader(f)] == [case_pid(11, 0), pid]


def test_labels_on_ct_grid_and_pet_on_its_own_grid(cohort):
    for case_dir in sorted((cohort / "a" / "Task 1").iterdir()):
        pid = case_dir.name
        ct = sitk.ReadImage(str(case_dir / f"{pid}__CT.nii.gz"))
        pet = sitk.ReadImage(str(case_dir / f"{pid}__PT.nii.gz"))
        label = sitk.ReadImage(str(case_dir / f"{pid}.nii.gz"))
        assert label.GetPixelID() == sitk.sitkUInt8 and ct.GetPixelID() == sitk.sitkInt16
        assert _geometry(label) == _geometry(ct)
        assert ct.GetSize() != pet.GetSize() and ct.GetSpacing() != pet.GetSpacing()
        assert ct.GetOrigin() != pet.GetOrigin()
        values = set(np.unique(sitk.GetArrayViewFromImage(label)).tolist())
        assert values <= {0, 1, 2} and 1 in values


def test_gtvp_centroid_matches_pet_hot_spot():
    """The GTVp centroid (mm) from the CT-grid label equals the centroid of the hot PET uptake (PET grid)."""
    for g in range(3):
        case = generate_case(case_pid(3, g), case_seed(3, g), "small")
        centre = np.array([case.truth[f"gtvp_centroid_{a}_mm"] for a in "xyz"])
        stats = sitk.LabelShapeStatisticsImageFilter()
        stats.Execute(case.label)
        assert np.allclose(stats.GetCentroid(1), centre, atol=1e-3)
        pet = sitk.GetArrayFromImage(case.pet) / case.truth["pet_scale"]
        points = _physical_points(case.pet)
        radius = np.cbrt(3 * case.truth["gtvp_volume_ml"] * 1000 / (4 * np.pi)) + 8.0
        near = np.linalg.norm(points - centre, axis=-1) < radius
        hot = near & (pet > 0.5 * pet[near].max())
        pet_centre = (points[hot] * pet[hot, None]).sum(axis=0) / pet[hot].sum()
        assert np.linalg.norm(pet_centre - centre) < 4.0, (case.pid, pet_centre, centre)


def test_flipped_directions_keep_the_anatomy_in_place():
    pid, seed = case_pid(5, 0), case_seed(5, 0)
    plain = generate_case(pid, seed, "small", flips=(IDENTITY, IDENTITY))
    flipped = generate_case(pid, seed, "small", flips=((-1, -1, 1), (-1, 1, -1)))
    assert flipped.ct.GetDirection() == (-1, 0, 0, 0, -1, 0, 0, 0, 1)
    assert plain.truth["gtvp_volume_ml"] == flipped.truth["gtvp_volume_ml"]
    # true_risk uses the measured SUVmax, whose noise realisation depends on the grid's voxel order
    assert abs(plain.truth["true_risk"] - flipped.truth["true_risk"]) < 0.2
    # same voxel centres traversed backwards: the label is exactly the flipped array
    lab_plain = sitk.GetArrayFromImage(plain.label)
    lab_flip = sitk.GetArrayFromImage(flipped.label)
    assert lab_plain.any() and np.array_equal(lab_plain, lab_flip[:, ::-1, ::-1])
    # CT differs only by the noise realisation (|a - b| ~ noise), never by misplaced anatomy (hundreds of HU)
    ct_plain = sitk.GetArrayFromImage(plain.ct).astype(float)
    ct_flip = sitk.GetArrayFromImage(sitk.DICOMOrient(flipped.ct, "LPS")).astype(float)
    assert np.median(np.abs(ct_plain - ct_flip)) < 2.0 * plain.truth["ct_noise_hu"]
    # PET: the brain (SUV > 4 in the top third) has the same physical centroid on both grids
    centroids = []
    for image in (plain.pet, flipped.pet):
        suv = sitk.GetArrayFromImage(image) / plain.truth["pet_scale"]
        points = _physical_points(image)
        top = points[..., 2] > np.percentile(points[..., 2], 66)
        sel = top & (suv > 4.0)
        centroids.append(points[sel].mean(axis=0))
    assert np.linalg.norm(centroids[0] - centroids[1]) < 1.0


def test_bq_per_ml_cases_are_scaled_as_recorded():
    seen = set()
    for g in range(40):
        pid = case_pid(21, g)
        if pid.split("-")[0] not in {"CHUV", "HMR", "MDA"}:
            continue
        draw = draw_case(pid, case_seed(21, g), "small")
        if draw.bq in seen:
            continue
        seen.add(draw.bq)
        case = generate_case(pid, case_seed(21, g), "small")
        pet = sitk.GetArrayFromImage(case.pet)
        scale = case.truth["pet_scale"]
        if case.truth["pet_units"] == "Bq/ml":
            assert 3000.0 <= scale <= 8000.0
        else:
            assert scale == 1.0
        brain = np.percentile(pet, 99.5) / scale  # the brain dominates the top percentile
        assert 4.0 < brain < 15.0, (pid, brain)
        assert case.truth["suv_max"] <= pet.max() / scale + 1e-3  # suv_max is recorded in SUV
        if len(seen) == 2:
            break
    assert seen == {True, False}


def test_missingness_fractions():
    """Missingness per variable on 400 drawn records (parameter draws only: no images) near MISSING_RATE."""
    missing = {k: 0 for k in CLINICAL_KEYS}
    n = 400
    for g in range(n):
        draw = draw_case(case_pid(8, g), case_seed(8, g), "small")
        for k in CLINICAL_KEYS:
            missing[k] += draw.missing[k]
    for k, rate in MISSING_RATE.items():
        assert abs(missing[k] / n - rate) < 0.08, (k, missing[k] / n)
    assert all(0.05 <= missing[k] / n <= 0.45 for k in CLINICAL_KEYS if k != "CenterID")


def test_gc_case_layout(tmp_path):
    from hmvnet.data.cases import read_gc_case

    inp, truth = tmp_path / "input", tmp_path / "truth"
    case = write_gc_case(inp, seed=364, size="small", truth_out=truth)
    ct_files = list((inp / "images" / "ct").iterdir())
    pet_files = list((inp / "images" / "pet").iterdir())
    assert len(ct_files) == 1 and len(pet_files) == 1 and ct_files[0].suffix == ".mha"
    assert sorted(p.name for p in inp.rglob("*") if p.is_file() and p.suffix != ".mha") == ["ehr.json"]
    ehr = json.loads((inp / "ehr.json").read_text())
    for key, value in case.clinical.items():
        if value is not None:
            assert ehr[key] == value
        else:
            assert ehr.get(key) in (None, "NaN")
    read = read_gc_case(inp)
    label = sitk.ReadImage(str(truth / "label.nii.gz"))
    assert _geometry(label) == _geometry(read.ct)
    assert json.loads((truth / "truth.json").read_text())["PatientID"] == case.pid
    again = tmp_path / "again"
    write_gc_case(again, seed=364, size="small")
    assert [p.name for p in (again / "images" / "ct").iterdir()] == [ct_files[0].name]
    assert (again / "images" / "ct" / ct_files[0].name).read_bytes() == ct_files[0].read_bytes()


def test_committed_sample_matches_generator():
    """test/input is `hmvnet synth --gc-case --seed 364 --size small` (+ truth in test/sample_truth)."""

    root = REPO / "test"
    if not (root / "input").is_dir():
        pytest.skip("no committed sample")
    truth = json.loads((root / "sample_truth" / "truth.json").read_text())
    label = sitk.ReadImage(str(root / "sample_truth" / "label.nii.gz"))
    ct = sitk.ReadImage(str(next((root / "input" / "images" / "ct").glob("*.mha"))))
    pet = sitk.ReadImage(str(next((root / "input" / "images" / "pet").glob("*.mha"))))
    assert _geometry(label) == _geometry(ct) and ct.GetDirection() != (1, 0, 0, 0, 1, 0, 0, 0, 1)
    assert _geometry(pet) != _geometry(ct)
    assert truth["gtvp_volume_ml"] > 0 and truth["gtvn_components"] >= 2
    total = sum(p.stat().st_size for p in (root / "input").rglob("*") if p.is_file())
    assert total < 1.5e6


def test_preview_png(tmp_path):
    case = generate_case(case_pid(3, 0), case_seed(3, 0), "small")
    path = save_preview(case, tmp_path / "p.png")
    import matplotlib.image

    rgb = matplotlib.image.imread(str(path))[..., :3]
    assert rgb.shape[0] > 100 and rgb.shape[1] > 100
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    cyan = (r < 0.3) & (g > 0.7) & (b > 0.7)  # the GTVp contour colour
    lime = (r < 0.3) & (g > 0.7) & (b < 0.3)  # the GTVn contour colour
    assert cyan.sum() > 20 and lime.sum() > 20


def _volumes_ok(truths):
    for t in truths:
        assert 1.5 <= t["gtvp_volume_ml"] <= 100.0, t
        assert 0 <= t["gtvn_count"] <= 6
        if t["gtvn_count"] == 0:
            assert t["gtvn_volume_ml"] == 0.0
        else:
            per_node = t["gtvn_volume_ml"] / t["gtvn_count"]
            assert 0.1 <= per_node <= 25.0, t
        assert 3.0 <= t["suv_max"] <= 35.0, t


def test_small_case_volumes_in_range():
    _volumes_ok([generate_case(case_pid(4, g), case_seed(4, g), "small").truth for g in range(3)])


@pytest.mark.slow
def test_oracle_c_index_event_rate_and_volumes():
    """~100 small cases: events ~10-35 %, oracle C-index of true_risk > 0.65, lesion volumes in range."""
    from sksurv.metrics import concordance_index_censored

    truths = [generate_case(case_pid(2, g), case_seed(2, g), "small").truth for g in range(100)]
    event = np.array([t["Relapse"] for t in truths], dtype=bool)
    time = np.array([t["RFS"] for t in truths], dtype=float)
    risk = np.array([t["true_risk"] for t in truths])
    assert 0.10 <= event.mean() <= 0.35, event.mean()
    c_index = concordance_index_censored(event, time, risk)[0]
    assert c_index > 0.65, c_index
    assert concordance_index_censored(event, time, -risk)[0] < 0.35  # the sign: higher risk = earlier relapse
    _volumes_ok(truths)


def test_t_and_n_stage_columns_follow_the_true_label_geometry(cohort):
    from hmvnet.staging.geometry import staging_geometry
    from hmvnet.staging.truth import synthetic_stages
    from hmvnet.synthetic.cohort import case_seed, draw_case

    a = cohort / "a"
    with (a / TASK2_CSV).open(newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        pid = row["PatientID"]
        assert row["T-stage"] in {"T0", "T1", "T2", "T3", "T4"} and row["N-stage"] in {"N0", "N1", "N2", "N3"}
        seed = case_seed(11, int(pid.split("-")[1]) - 1)  # NNN = index + 1
        label = sitk.ReadImage(str(a / "Task 1" / pid / f"{pid}.nii.gz"))
        geometry = staging_geometry(label, midline_x_mm=draw_case(pid, seed, "small").patient.x0)
        expected = synthetic_stages(geometry, np.random.default_rng([seed, 13]))
        assert (row["T-stage"], row["N-stage"]) == (expected["T-stage"], expected["N-stage"])
