"""Hostile and broken image files are refused from their header, before any voxel is allocated."""

from __future__ import annotations

import resource
import threading

import numpy as np
import pytest
import SimpleITK as sitk

from hmvnet.data.cases import read_gc_case, read_image
from hmvnet.data.safe_read import CT_UNSIGNED_OFFSET, check_image_file
from hmvnet.errors import InputError
from tests.hostile import (
    compressed_bomb,
    fifo_data_file,
    header_only_bomb,
    outside_data_file,
    recast_ct,
    singular_direction,
)


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_compressed_header_bomb_refused_without_allocating(tmp_path):
    path = compressed_bomb(tmp_path / "bomb.mha")
    assert path.stat().st_size < 5000
    before = _peak_rss_mib()
    with pytest.raises(InputError, match=r"claims size \(800, 800, 600\)"):
        read_image(path, "CT")
    # within the size limit, the compression ratio gives it away
    smaller = compressed_bomb(tmp_path / "smaller.mha", size=(400, 400, 300))
    with pytest.raises(InputError, match=r"CT: cannot read .*smaller\.mha \(truncated or forged"):
        read_image(smaller, "CT")
    assert _peak_rss_mib() - before < 50  # 400x400x300 int16 alone would be 92 MiB


def test_header_only_bomb_refused_by_claimed_size(tmp_path):
    path = header_only_bomb(tmp_path / "tiny.mha")
    assert path.stat().st_size < 400
    with pytest.raises(InputError, match=r"claims size \(1000, 1000, 1000\).*the limit is"):
        read_image(path, "CT")


def test_small_uncompressed_claim_with_missing_voxels_is_truncated(tmp_path):
    path = header_only_bomb(tmp_path / "short.mha", size=(64, 64, 64))
    with pytest.raises(InputError, match=r"truncated: .* fewer than the 524,288 bytes"):
        check_image_file(path, "PET")


def test_fifo_element_data_file_is_refused_without_blocking(tmp_path):
    path = fifo_data_file(tmp_path / "case")
    done = threading.Event()
    errors: list[Exception] = []

    def attempt() -> None:
        try:
            read_image(path, "CT")
        except InputError as exc:
            errors.append(exc)
        done.set()

    threading.Thread(target=attempt, daemon=True).start()
    assert done.wait(5), "reading a FIFO data file blocked"
    assert errors and "is not a regular file" in str(errors[0])


def test_absolute_element_data_file_outside_is_refused(tmp_path):
    path = outside_data_file(tmp_path / "case", tmp_path / "secret.raw")
    with pytest.raises(InputError, match="points outside its folder"):
        read_image(path, "CT")


def test_symlink_leaving_the_input_folder_is_refused(tmp_path):
    outside = tmp_path / "elsewhere.mha"
    sitk.WriteImage(sitk.GetImageFromArray(np.full((4, 4, 4), -1000, np.int16)), str(outside))
    root = tmp_path / "input"
    (root / "images" / "ct").mkdir(parents=True)
    (root / "images" / "ct" / "ct.mha").symlink_to(outside)
    with pytest.raises(InputError, match="outside the input folder"):
        read_image(root / "images" / "ct" / "ct.mha", "CT", root=root)


def test_singular_direction_reports_itk_reason(tmp_path):
    with pytest.raises(InputError, match="Bad direction, determinant is 0"):
        read_image(singular_direction(tmp_path / "s.mha"), "CT")


def _gc_input_with_ct(gc_input, pixel_type, offset):
    ct = next((gc_input / "images" / "ct").iterdir())
    recast_ct(ct, pixel_type, offset)
    return gc_input


def test_uint16_ct_with_offset_is_shifted_back_with_a_warning(gc_input):
    ct_path = next((gc_input / "images" / "ct").iterdir())
    original = sitk.GetArrayFromImage(sitk.ReadImage(str(ct_path), sitk.sitkFloat32))
    case = read_gc_case(_gc_input_with_ct(gc_input, sitk.sitkUInt16, CT_UNSIGNED_OFFSET))
    np.testing.assert_allclose(sitk.GetArrayFromImage(case.ct), np.round(original), atol=0.5)
    assert case.warnings and "shifted by -1024" in case.warnings[0]


def test_uint8_ct_is_refused(gc_input):
    with pytest.raises(InputError, match="8-bit values cannot be Hounsfield units"):
        read_gc_case(_gc_input_with_ct(gc_input, sitk.sitkUInt8, 0.0))


def test_signed_ct_in_hu_is_unchanged_and_silent(gc_input):
    case = read_gc_case(gc_input)
    assert case.warnings == []
    assert sitk.GetArrayViewFromImage(case.ct).min() == pytest.approx(-1000.0)
