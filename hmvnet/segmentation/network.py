"""The HM-VNet segmentation network (paper §2.3, §2.4, §2.6).

Layout, for an input ``(N, 2, z, y, x)`` (channel 0 = CT in [0, 1], channel 1 = PET z-scored) and the
sizes of :class:`~hmvnet.config.ModelConfig` (``s`` = ``stem_channels``, ``f`` = ``feature_size``,
``p`` = ``patch_size``)::

    CT  -> stem (2 x [3x3x3 conv, instance norm, GELU], s ch) --+
    PET -> stem (same, own weights, s ch) ----------------------+-> concat f0 (2s ch, full res)
    f0 -> MONAI SwinTransformer (4 stages, W-MSA / SW-MSA with relative position bias, patch merging)
          -> e0 (f, /p)  e1 (2f, /2p)  e2 (4f, /4p)  e3 (8f, /8p)  e4 (16f, /16p), each layer-normed
    decoder: d = e4; for each skip in e3, e2, e1, e0, f0:
          d = block(concat[transposed-conv k=stride=2 (d), skip])
    logits = 1x1x1 conv (d) -> (N, 3, z, y, x)

The network returns **logits**; the softmax of the paper's §2.6 is applied by the loss
(``DiceCELoss(softmax=True)``) and by inference, not here, so that the loss can use log-softmax.

The encoder is MONAI's :class:`~monai.networks.nets.swin_unetr.SwinTransformer`, used as upstream defines it,
with ``normalize=True`` (a parameter-free layer norm over channels on each of its five outputs, as SwinUNETR
does). The decoder is lean on purpose: one 3x3x3 conv + instance norm + GELU per stage instead of SwinUNETR's
residual blocks on every skip, and a full-resolution stage only ``stem_channels`` wide, so HM-VNet is no
slower than SwinUNETR of the same ``feature_size`` (see ``benchmarks/network_benchmark.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution
from monai.networks.nets.swin_unetr import SwinTransformer
from torch import nn

from hmvnet.config import Architecture, ModelConfig

__all__ = ["HMVNet", "build_model", "required_divisor"]

_NORM = ("instance", {"affine": True})


def _conv_block(in_channels: int, out_channels: int) -> Convolution:
    """3x3x3 conv (padding 1, no bias: the norm follows) + instance norm (affine) + GELU; keeps the size."""
    return Convolution(
        spatial_dims=3,
        in_channels=in_channels,
        out_channels=out_channels,
        kernel_size=3,
        act="GELU",
        norm=_NORM,
        bias=False,
    )


class ModalityStem(nn.Sequential):
    """Modality-specific stem (§2.3): ``(N, 1, z, y, x) -> (N, channels, z, y, x)``, two conv blocks."""

    def __init__(self, channels: int):
        super().__init__(_conv_block(1, channels), _conv_block(channels, channels))


class UpBlock(nn.Module):
    """One decoder stage: transposed conv (kernel = stride = 2) doubles the size, concat the skip, conv block.

    ``(N, in_channels, z, y, x)`` and skip ``(N, skip_channels, 2z, 2y, 2x)`` ->
    ``(N, out_channels, 2z, 2y, 2x)``.
    """

    def __init__(self, in_channels: int, skip_channels: int, up_channels: int, out_channels: int):
        super().__init__()
        self.up = nn.ConvTranspose3d(in_channels, up_channels, kernel_size=2, stride=2)
        self.block = _conv_block(up_channels + skip_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.block(torch.cat([self.up(x), skip], dim=1))


def required_divisor(config: ModelConfig) -> tuple[int, int, int]:
    """Per-axis factor ``(z, y, x)`` that every input spatial size must be a multiple of:
    ``patch_size * 2**len(depths)`` (32 with the defaults), since each Swin stage ends with a patch merging."""
    if config.architecture == Architecture.SWINUNETR:
        return (32, 32, 32)  # patch size 2 and four patch mergings, fixed in MONAI's SwinUNETR
    return tuple(int(p) * 2 ** len(config.depths) for p in config.patch_size)  # type: ignore[return-value]


class HMVNet(nn.Module):
    """Hierarchical Multimodal Vision Network: dual modality stems, a 3D Swin encoder, a convolutional decoder.

    Args:
        config: network sizes; every size comes from here. ``patch_size`` must be 2 per axis (the decoder
            restores the stem resolution with one transposed conv of stride 2).
        decoder_channels: output widths of the five decoder stages, at strides ``(8p, 4p, 2p, p, 1)``
            relative to the input (deepest first, the last one at full resolution). Default: the widths of the
            matching encoder skips ``(8f, 4f, 2f, f)`` and ``stem_channels`` at full resolution. Not in
            ``ModelConfig`` (yet), so ``build_model`` always uses the default.

    Forward: ``(N, 2, z, y, x)`` float32 (channel 0 CT scaled to [0, 1], channel 1 PET z-scored) ->
    logits ``(N, out_channels, z, y, x)`` (background, GTVp, GTVn); apply a softmax over dim 1 for
    probabilities. ``z, y, x`` must be multiples of :func:`required_divisor` (32 with the defaults).
    """

    def __init__(self, config: ModelConfig, decoder_channels: Sequence[int] | None = None):
        super().__init__()
        if config.in_channels != 2:
            raise ValueError(f"ModelConfig.in_channels must be 2 (CT, PET stems), got {config.in_channels}")
        if len(config.depths) != 4 or len(config.num_heads) != 4:
            raise ValueError(
                f"ModelConfig.depths and num_heads must have 4 stages (MONAI SwinTransformer), "
                f"got depths={config.depths}, num_heads={config.num_heads}"
            )
        if tuple(config.patch_size) != (2, 2, 2):
            raise ValueError(f"ModelConfig.patch_size must be (2, 2, 2), got {config.patch_size}")
        self.config = config
        f, s = config.feature_size, config.stem_channels
        enc_channels = [f * 2**k for k in range(5)]  # e0 .. e4
        if decoder_channels is None:
            decoder_channels = (8 * f, 4 * f, 2 * f, f, s)
        if len(decoder_channels) != 5:
            raise ValueError(f"decoder_channels needs 5 widths (deepest first), got {decoder_channels}")
        self.decoder_channels = tuple(int(c) for c in decoder_channels)

        self.stem_ct = ModalityStem(s)
        self.stem_pet = ModalityStem(s)
        self.encoder = SwinTransformer(
            in_chans=2 * s,
            embed_dim=f,
            window_size=tuple(config.window_size),
            patch_size=tuple(config.patch_size),
            depths=tuple(config.depths),
            num_heads=tuple(config.num_heads),
            drop_path_rate=config.drop_path_rate,
            spatial_dims=3,
            use_flash_attention=config.use_flash_attention,
        )
        skips = [enc_channels[3], enc_channels[2], enc_channels[1], enc_channels[0], 2 * s]
        ups = []
        in_ch = enc_channels[4]
        for skip_ch, out_ch in zip(skips, self.decoder_channels, strict=True):
            # The upsampled branch matches the stage width, except at full resolution where it is kept
            # as narrow as the stage output: full-resolution convs dominate the run time.
            ups.append(UpBlock(in_ch, skip_ch, up_channels=out_ch, out_channels=out_ch))
            in_ch = out_ch
        self.decoder = nn.ModuleList(ups)
        self.head = nn.Conv3d(in_ch, config.out_channels, kernel_size=1)

    @property
    def use_flash_attention(self) -> bool:
        """Whether the Swin attention uses ``scaled_dot_product_attention`` (only when grad is disabled)."""
        return self.config.use_flash_attention

    def check_input(self, shape: Sequence[int]) -> None:
        """Raise ``ValueError`` naming ``shape`` unless it is ``(N, 2, z, y, x)`` with divisible sizes."""
        shape = tuple(int(v) for v in shape)
        if len(shape) != 5 or shape[1] != self.config.in_channels:
            raise ValueError(f"HMVNet expects (N, {self.config.in_channels}, z, y, x), got shape {shape}")
        div = required_divisor(self.config)
        if any(n % d for n, d in zip(shape[2:], div, strict=True)):
            raise ValueError(
                f"HMVNet input spatial size {shape[2:]} (z, y, x) must be divisible by {div} "
                f"(patch_size * 2**{len(self.config.depths)}); input shape {shape}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 2, z, y, x)`` -> logits ``(N, out_channels, z, y, x)``."""
        if not torch.jit.is_tracing():
            self.check_input(x.shape)
        f0 = torch.cat([self.stem_ct(x[:, 0:1]), self.stem_pet(x[:, 1:2])], dim=1)
        e0, e1, e2, e3, e4 = self.encoder(f0, normalize=True)
        d = e4
        for block, skip in zip(self.decoder, (e3, e2, e1, e0, f0), strict=True):
            d = block(d, skip)
        return self.head(d)


def build_model(config: ModelConfig) -> nn.Module:
    """The network named by ``config.architecture``, freshly initialised (PyTorch / MONAI defaults):
    HM-VNet (the default), or MONAI's SwinUNETR of the same feature size (a second architecture, selectable by
    name in config.json as nnU-Net's plans select theirs; it uses its own window size 7 and patch size 2)."""
    if config.architecture == Architecture.HMVNET:
        return HMVNet(config)
    if config.architecture == Architecture.SWINUNETR:
        from monai.networks.nets import SwinUNETR

        return SwinUNETR(
            in_channels=config.in_channels,
            out_channels=config.out_channels,
            feature_size=config.feature_size,
            depths=tuple(config.depths),
            num_heads=tuple(config.num_heads),
            dropout_path_rate=config.drop_path_rate,
            use_v2=False,
            use_flash_attention=config.use_flash_attention,
        )
    raise ValueError(f"unknown architecture {config.architecture!r}")  # config validation forbids this
