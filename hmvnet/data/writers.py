"""The one atomic writer of the package, and the one JSON sanitiser.

Every output file (label images, JSON, CSV, HTML, PNG, safetensors, caches) is written to a hidden temporary file in
its destination folder and renamed over the destination, so a reader never sees a half-written file and a killed
run leaves at most a ``.<name>.partial*`` file, never a truncated output. Files get the normal permissions of a
newly created file (``0666 & ~umask``: 0644 under the usual umask 022), so a host user can read what a container's
non-root user wrote (``tempfile.mkstemp`` alone would leave 0600).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from hmvnet.geometry import assert_same_space

PARTIAL_MARK = ".partial"
"""Infix of the temporary files (``.<name>.<random>.partial<suffix>``), cleaned up by the writer itself."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix, so format-sniffing writers work); on success it is
    given normal permissions and renamed onto ``path``; on any exception it is removed and ``path`` is untouched.
    Parent folders are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".nii.gz") else path.suffix
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f"{PARTIAL_MARK}{suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_with(path: Path | str, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp_path)`` and move the result atomically onto ``path``; returns ``path``."""
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def write_text(text: str, path: Path | str) -> Path:
    """Write a text file (UTF-8) atomically."""
    return write_with(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(data: Any, path: Path | str, indent: int | None = None) -> Path:
    """Write JSON atomically. Non-finite floats are refused (``allow_nan=False``): run :func:`json_ready` first
    where ``null`` is the right spelling of a missing number."""
    return write_text(json.dumps(data, allow_nan=False, indent=indent) + "\n", path)


def write_label(label: sitk.Image, path: Path | str, reference: sitk.Image | None = None) -> Path:
    """Write a uint8 label image with compression, atomically.

    With ``reference`` the label must already be on its grid (size, spacing, origin, direction): checked.
    """
    if reference is not None:
        assert_same_space(label=label, reference_ct=reference)
    label = sitk.Cast(label, sitk.sitkUInt8)
    return write_with(path, lambda tmp: sitk.WriteImage(label, str(tmp), useCompression=True))


def json_ready(value: Any, nonfinite: str = "null") -> Any:
    """``value`` as plain JSON types: numpy/torch scalars and arrays as Python numbers and lists, paths as strings,
    mapping keys as strings, tuples as lists. Non-finite floats become ``None`` (``nonfinite="null"``, JSON has no
    NaN) or are kept (``"keep"``, for internal state files read back by Python's json)."""
    if isinstance(value, Mapping):
        return {str(k): json_ready(v, nonfinite) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [json_ready(v, nonfinite) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", None) == 0:
        value = value.item()  # numpy / torch scalar
    if isinstance(value, float) and not math.isfinite(value) and nonfinite == "null":
        return None
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
