"""Weight files: safetensors only (no pickles), each checked against the sha256 recorded in ``config.json``.

Where weights come from, in order: an explicit folder, ``$HMVNET_WEIGHTS``, ``/opt/ml/model`` (the platform's
mounted model tarball) when it holds weights, the ``weights/`` folder of the source checkout next to ``process.py``
(an editable install), and ``./weights`` in the working directory (a wheel or other non-editable install, whose
package folder holds no weights). ``hmvnet weights --path`` prints this list; ``--verify`` checks the checksums.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from hmvnet.data.writers import write_with
from hmvnet.errors import WeightsError

ENV_WEIGHTS = "HMVNET_WEIGHTS"
PLATFORM_MODEL_DIR = Path("/opt/ml/model")
SHIPPED_WEIGHTS = Path(__file__).resolve().parents[2] / "weights"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def save_state_dict(state: dict[str, torch.Tensor], path: Path) -> str:
    """Save a state dict as safetensors (atomically) and return its sha256."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    path = write_with(path, lambda tmp: save_file(tensors, str(tmp)))
    return sha256_file(path)


def load_state_dict(path: Path, expected_sha256: str) -> dict[str, torch.Tensor]:
    """Load a safetensors file after checking its sha256; a mismatch or missing file is a :class:`WeightsError`."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weight file {path} is missing")
    actual = sha256_file(path)
    if actual != expected_sha256:
        raise WeightsError(
            f"checksum mismatch for {path}: sha256 {actual[:16]}..., config.json expects {expected_sha256[:16]}...; "
            "the file is corrupt or does not belong to this configuration"
        )
    return load_file(str(path))


def has_weights(folder: Path) -> bool:
    """Whether ``folder`` holds a segmentation configuration (``segmentation/config.json``)."""
    return (Path(folder) / "segmentation" / "config.json").is_file()


def search_locations(explicit: Path | str | None = None) -> list[tuple[str, Path]]:
    """``(where from, folder)`` in search order; an explicit folder or ``$HMVNET_WEIGHTS`` is the only entry."""
    if explicit:
        return [("--weights", Path(explicit))]
    if os.environ.get(ENV_WEIGHTS):
        return [(f"${ENV_WEIGHTS}", Path(os.environ[ENV_WEIGHTS]))]
    found = [
        ("platform model folder", PLATFORM_MODEL_DIR),
        ("source checkout", SHIPPED_WEIGHTS),
        ("working directory", Path.cwd() / "weights"),
    ]
    return [
        (w, f) for i, (w, f) in enumerate(found) if f.resolve() not in {g.resolve() for _, g in found[:i]}
    ]


def resolve_weights_dir(explicit: Path | str | None = None) -> Path:
    """The weights folder to use: the first of :func:`search_locations` that holds weights; when none does, the
    explicit one or the source checkout's (whose missing files :func:`describe_search` then explains)."""
    locations = search_locations(explicit)
    for _, folder in locations:
        if has_weights(folder):
            return folder
    return locations[0][1] if len(locations) == 1 else SHIPPED_WEIGHTS


def describe_search(explicit: Path | str | None = None) -> str:
    """One line naming every location searched and whether it holds weights (for error messages)."""
    return "; ".join(
        f"{where} {folder} ({'found' if has_weights(folder) else 'no segmentation/config.json'})"
        for where, folder in search_locations(explicit)
    )


def count_parameters(model: torch.nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable, by default) scalar parameters of ``model``: the one parameter counter."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
