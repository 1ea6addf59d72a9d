"""Checks made on an image file *before* its voxels are read, so a hostile or broken file cannot allocate
gigabytes, block on a FIFO or pull data from outside the case folder; and the CT value-range plausibility check.

:func:`check_image_file` is called by :func:`hmvnet.data.cases.read_image` on every single-file image:

1. the path (after resolving symlinks) must stay inside the input folder (``root``) and be a regular file;
2. for MetaImage (``.mha``/``.mhd``) the header's ``ElementDataFile`` must be ``LOCAL`` or a regular file in the
   same folder as the header (no absolute paths, no ``..``, no FIFO, no ``LIST``/patterns);
3. the header alone is read (``sitk.ImageFileReader.ReadImageInformation``) and the claimed voxel count and memory
   are refused above :data:`MAX_VOXELS` / :data:`MAX_BYTES`;
4. the file must be plausible for the claimed size: an uncompressed file at least as large as its voxel data, a
   compressed one at least ``1 /`` :data:`MAX_COMPRESSION_RATIO` of it (zlib cannot exceed about 1032:1).

:func:`plausible_ct` then looks at the voxel values of a CT and corrects the one documented storage slip (HU + 1024
in an unsigned type, no rescale) with a warning, and refuses a CT whose values cannot be Hounsfield units.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from hmvnet.errors import InputError

log = logging.getLogger(__name__)

MAX_VOXELS = 512 * 512 * 1024
"""Largest accepted image: 268 M voxels (a whole-body CT at 512x512x1024); HECKTOR volumes are < 100 M."""
MAX_BYTES = 1 << 30
"""Largest accepted voxel payload in the file's own pixel type: 1 GiB."""
MAX_COMPRESSION_RATIO = 1100.0
"""A compressed payload smaller than ``claimed_bytes / MAX_COMPRESSION_RATIO`` is refused (deflate's ceiling is
about 1032:1, so no honest file is refused)."""
HEADER_ALLOWANCE = 64
"""Bytes below the exact uncompressed size still accepted (rounding of header-size estimates)."""
CT_UNSIGNED_OFFSET = 1024.0
"""The documented storage slip: CT saved as ``HU + 1024`` in an unsigned type without a rescale slope/intercept."""
CT_AIR_MAX_HU = -500.0
"""A head-and-neck CT contains air (around -1000 HU) outside the body: its 0.5th percentile is below this."""
CT_MIN_HU = -3100.0
CT_MAX_HU = 40000.0
"""Beyond these no CT value is Hounsfield units (metal implants reach about 30 000 HU in extended-range CT)."""

_META_SUFFIXES = (".mha", ".mhd")
_COMPRESSED_SUFFIXES = (
    ".gz",
    ".nrrd",
    ".tif",
    ".tiff",
)  # nrrd/tiff may be compressed: use the compressed rule


def resolve_inside(path: Path, root: Path | None, role: str) -> Path:
    """``path`` with symlinks resolved; an :class:`InputError` if it leaves ``root`` (when given)."""
    path = Path(path)
    resolved = path.resolve()
    if root is not None:
        root_resolved = Path(root).resolve()
        if resolved != root_resolved and root_resolved not in resolved.parents:
            raise InputError(
                f"{role}: {path} resolves to {resolved}, outside the input folder {root}; refused"
            )
    return resolved


def _require_regular(path: Path, role: str, what: str = "image") -> None:
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise InputError(f"{role}: cannot open {what} {path} ({exc.strerror})") from exc
    if not stat.S_ISREG(mode):
        raise InputError(f"{role}: {what} {path} is not a regular file (FIFO, device or folder); refused")


def _meta_header(path: Path, role: str) -> dict[str, str]:
    """The ``key = value`` lines of a MetaImage header, up to and including ``ElementDataFile``."""
    fields: dict[str, str] = {}
    with open(path, "rb") as stream:
        head = stream.read(1 << 16)
    for raw in head.split(b"\n"):
        line = raw.decode("latin-1").strip()
        if "=" not in line:
            continue
        key, value = (part.strip() for part in line.split("=", 1))
        fields[key] = value
        if key == "ElementDataFile":
            return fields
    raise InputError(
        f"{role}: cannot read {path} (no ElementDataFile line in its first 64 KiB: not a MetaImage)"
    )


def check_meta_data_file(path: Path, role: str) -> Path | None:
    """The external data file of a MetaImage header (``None`` for ``LOCAL``), checked to be a regular file in the
    header's folder. Lists and file patterns are refused (nothing in HECKTOR uses them)."""
    fields = _meta_header(path, role)
    target = fields["ElementDataFile"]
    if target.upper() == "LOCAL":
        return None
    if target.upper().startswith("LIST") or " " in target or "%" in target:
        raise InputError(f"{role}: {path} ElementDataFile = {target!r}: lists and patterns are not accepted")
    data = Path(target)
    if data.is_absolute() or ".." in data.parts:
        raise InputError(
            f"{role}: {path} ElementDataFile = {target!r} points outside its folder; expected a file beside it"
        )
    data_path = path.parent / data
    resolve_inside(data_path, path.parent, role)
    _require_regular(data_path, role, "ElementDataFile")
    return data_path


def _claimed(reader: sitk.ImageFileReader) -> tuple[int, int]:
    voxels = int(np.prod(reader.GetSize(), dtype=np.float64))
    item = sitk.Image([1] * reader.GetDimension(), reader.GetPixelID()).GetSizeOfPixelComponent()
    components = reader.GetNumberOfComponents()
    return voxels, voxels * components * item


def read_information(path: Path, role: str) -> sitk.ImageFileReader:
    """An ``ImageFileReader`` with the header read (no voxels); ITK's own reason on failure."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise InputError(f"{role}: cannot read {path} ({itk_reason(exc)})") from exc
    return reader


def itk_reason(exc: BaseException) -> str:
    """The informative sentence of an ITK exception: the ``ITK ERROR: <object>(0x...):`` line or a
    ``Description:`` line, with the object address dropped and a printed matrix joined onto one line; else the
    last line."""
    text = str(exc).strip()
    match = re.search(r"ITK ERROR: [^:]*:\s*(.*)", text, re.S) or re.search(
        r"Description:\s*(.*)", text, re.S
    )
    if match:
        return " ".join(match.group(1).split()) or "unknown reader error"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "unknown reader error"


def check_image_file(path: Path, role: str, root: Path | None = None) -> None:
    """Refuse an image file before its voxels are read (see the module docstring); ``root`` is the input folder
    that ``path`` (and its symlinks) must stay inside."""
    path = Path(path)
    resolved = resolve_inside(path, root, role)
    _require_regular(resolved, role)
    name = path.name.lower()
    data_path: Path | None = None
    if name.endswith(_META_SUFFIXES):
        data_path = check_meta_data_file(resolved, role)
    reader = read_information(resolved, role)
    voxels, claimed_bytes = _claimed(reader)
    if voxels > MAX_VOXELS or claimed_bytes > MAX_BYTES:
        raise InputError(
            f"{role}: {path} claims size {reader.GetSize()} ({voxels:,} voxels, {claimed_bytes / 2**20:,.0f} MiB); "
            f"the limit is {MAX_VOXELS:,} voxels and {MAX_BYTES / 2**20:,.0f} MiB"
        )
    file_bytes = os.stat(data_path or resolved).st_size
    compressed = name.endswith(_COMPRESSED_SUFFIXES) or (
        name.endswith(_META_SUFFIXES)
        and _meta_header(resolved, role).get("CompressedData", "").lower() == "true"
    )
    if compressed:
        if file_bytes * MAX_COMPRESSION_RATIO < claimed_bytes:
            raise InputError(
                f"{role}: cannot read {path} (truncated or forged: {file_bytes:,} bytes for {claimed_bytes:,} bytes "
                f"of voxels, ratio {claimed_bytes / max(file_bytes, 1):,.0f}:1 > {MAX_COMPRESSION_RATIO:.0f}:1)"
            )
    elif file_bytes + HEADER_ALLOWANCE < claimed_bytes:
        raise InputError(
            f"{role}: cannot read {path} (truncated: {file_bytes:,} bytes, fewer than the {claimed_bytes:,} bytes "
            "of uncompressed voxels its header claims)"
        )


def plausible_ct(image: sitk.Image, path: Path, stored_pixel_id: int) -> tuple[sitk.Image, str | None]:
    """Check that a float32 CT holds Hounsfield units; returns ``(image, warning or None)``.

    - stored as 8-bit integers: refused (256 levels cannot hold HU of air, tissue and bone);
    - stored unsigned (16/32 bit) with air near 0 (0.5th percentile < 200) and bone above 1000: read as HU + 1024
      without rescale and shifted by -1024 HU with a warning; any other unsigned CT is refused;
    - values outside [-3100, 40000] HU are refused; a CT with no air (0.5th percentile above -500 HU, e.g. cropped
      to the body) is kept with a warning.
    """
    array = sitk.GetArrayViewFromImage(image)
    low, high = float(array.min()), float(array.max())
    p_low = float(np.percentile(array[:: max(1, array.shape[0] // 32)], 0.5))
    summary = f"CT: {path} holds {sitk.GetPixelIDValueAsString(stored_pixel_id)} values {low:g}..{high:g}"
    if stored_pixel_id in (sitk.sitkUInt8, sitk.sitkInt8):
        raise InputError(
            f"{summary}: 8-bit values cannot be Hounsfield units; expected a signed or float CT in HU"
        )
    if stored_pixel_id in (sitk.sitkUInt16, sitk.sitkUInt32) and low >= 0:
        if p_low < 200 and high > 1000:
            note = f"{summary}: read as HU + {CT_UNSIGNED_OFFSET:g} stored without rescale, shifted by -{CT_UNSIGNED_OFFSET:g}"
            log.warning("%s", note)
            return image - CT_UNSIGNED_OFFSET, note
        raise InputError(
            f"{summary} (0.5th percentile {p_low:g}): neither HU nor HU + {CT_UNSIGNED_OFFSET:g}; "
            "expected a signed or float CT in HU"
        )
    if low < CT_MIN_HU or high > CT_MAX_HU:
        raise InputError(f"{summary}: outside [{CT_MIN_HU:g}, {CT_MAX_HU:g}]; these are not Hounsfield units")
    if p_low > CT_AIR_MAX_HU:
        note = f"{summary}: no air (0.5th percentile {p_low:g} > {CT_AIR_MAX_HU:g} HU); check the CT is in HU"
        log.warning("%s", note)
        return image, note
    return image, None
