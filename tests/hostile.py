"""Builders of hostile and broken inputs (a few lines each), shared by the tests and ``tests/redteam.py``."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np
import SimpleITK as sitk


def meta_header(
    size: tuple[int, ...], data_file: str = "LOCAL", element: str = "MET_SHORT", **extra: str
) -> str:
    fields = {
        "ObjectType": "Image",
        "NDims": str(len(size)),
        "BinaryData": "True",
        "BinaryDataByteOrderMSB": "False",
        "CompressedData": "False",
        "TransformMatrix": "1 0 0 0 1 0 0 0 1",
        "Offset": "0 0 0",
        "ElementSpacing": "1 1 1",
        "DimSize": " ".join(str(s) for s in size),
        "ElementType": element,
    }
    fields.update(extra)
    fields["ElementDataFile"] = data_file  # must be the last line
    return "".join(f"{k} = {v}\n" for k, v in fields.items())


def compressed_bomb(
    path: Path, size: tuple[int, int, int] = (800, 800, 600), stream_bytes: int = 4096
) -> Path:
    """A MetaImage claiming ``size`` int16 voxels with only a short compressed stream (ITK zero-fills the rest)."""
    stream = zlib.compress(b"\0" * (stream_bytes * 1000))[:stream_bytes]
    header = meta_header(size, CompressedData="True", CompressedDataSize=str(len(stream)))
    path.write_bytes(header.encode() + stream)
    return path


def header_only_bomb(path: Path, size: tuple[int, int, int] = (1000, 1000, 1000)) -> Path:
    """An uncompressed MetaImage header claiming ``size`` voxels followed by no data (~300 bytes)."""
    path.write_text(meta_header(size))
    return path


def fifo_data_file(folder: Path, name: str = "ct.mha") -> Path:
    """A MetaImage whose ``ElementDataFile`` is a FIFO beside it (reading it would block forever)."""
    folder.mkdir(parents=True, exist_ok=True)
    os.mkfifo(folder / "ct.raw")
    path = folder / name
    path.write_text(meta_header((8, 8, 8), data_file="ct.raw"))
    return path


def outside_data_file(folder: Path, outside: Path, name: str = "ct.mha") -> Path:
    """A MetaImage whose ``ElementDataFile`` is an absolute path to ``outside`` (a raw int16 file it writes)."""
    folder.mkdir(parents=True, exist_ok=True)
    outside.write_bytes(np.full(8 * 8 * 8, -1000, dtype="<i2").tobytes())
    path = folder / name
    path.write_text(meta_header((8, 8, 8), data_file=str(outside.resolve())))
    return path


def singular_direction(path: Path) -> Path:
    """A MetaImage with a direction matrix of determinant 0."""
    header = meta_header((4, 4, 4), TransformMatrix="1 0 0 0 1 0 0 0 0")
    path.write_bytes(header.encode() + b"\0" * (4 * 4 * 4 * 2))
    return path


def recast_ct(path: Path, pixel_type: int, offset: float = 0.0) -> Path:
    """Rewrite the CT at ``path`` as ``pixel_type`` after adding ``offset`` (e.g. uint16 with HU + 1024)."""
    image = sitk.ReadImage(str(path), sitk.sitkFloat32) + offset
    image = sitk.Clamp(image, sitk.sitkFloat32, 0.0, 65535.0) if offset else image
    sitk.WriteImage(sitk.Cast(image, pixel_type), str(path), useCompression=True)
    return path
