"""Weight files: safetensors only (no pickles), each checked against the sha256 recorded in ``config.json``.

Where weights come from, in order: an explicit folder, ``$HMVNET_WEIGHTS``, ``/opt/ml/model`` (the platform's
mounted model tarball) when it holds weights, and the ``weights/`` folder shipped next to ``process.py``.
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


def resolve_weights_dir(explicit: Path | str | None = None) -> Path:
    """The weights folder to use (see the module docstring for the order)."""
    if explicit:
        return Path(explicit)
    if os.environ.get(ENV_WEIGHTS):
        return Path(os.environ[ENV_WEIGHTS])
    if (PLATFORM_MODEL_DIR / "segmentation" / "config.json").is_file():
        return PLATFORM_MODEL_DIR
    return SHIPPED_WEIGHTS


def count_parameters(model: torch.nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable, by default) scalar parameters of ``model``: the one parameter counter."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
