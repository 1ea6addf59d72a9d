"""HM-VNet network: shapes, input checks, a training step, flash/non-flash weight compatibility, paper sizes."""

from __future__ import annotations

import time

import pytest
import torch
from monai.losses import DiceCELoss

from hmvnet.config import ModelConfig
from hmvnet.data.weights import count_parameters
from hmvnet.segmentation.network import HMVNet, build_model, required_divisor

torch.set_num_threads(1)

TINY = ModelConfig(
    stem_channels=4,
    feature_size=6,
    depths=(2, 2, 2, 2),
    num_heads=(1, 2, 4, 8),
    window_size=(4, 4, 4),
)


def _tiny(flash: bool = False, seed: int = 0) -> HMVNet:
    torch.manual_seed(seed)
    return build_model(ModelConfig(**{**TINY.__dict__, "use_flash_attention": flash}))


@pytest.mark.parametrize("size", [(32, 32, 32), (64, 32, 32), (32, 64, 96)])
def test_output_shape_matches_input(size):
    model = _tiny().eval()
    x = torch.rand(2, 2, *size)
    with torch.inference_mode():
        y = model(x)
    assert y.shape == (2, 3, *size)
    assert y.dtype == torch.float32
    assert torch.isfinite(y).all()


def test_divisor_follows_config():
    assert required_divisor(ModelConfig()) == (32, 32, 32)


@pytest.mark.parametrize(
    "shape",
    [(1, 2, 32, 32, 48), (1, 2, 16, 32, 32), (1, 1, 32, 32, 32), (2, 32, 32, 32)],
)
def test_bad_input_shape_raises_value_error_naming_it(shape):
    model = _tiny()
    with pytest.raises(ValueError, match=str(tuple(shape)).replace("(", r"\(").replace(")", r"\)")):
        model(torch.zeros(shape))


def test_bad_config_raises():
    with pytest.raises(ValueError, match="in_channels"):
        HMVNet(ModelConfig(in_channels=3))
    with pytest.raises(ValueError, match="depths"):
        HMVNet(ModelConfig(depths=(2, 2, 2), num_heads=(3, 6, 12)))


def test_stems_are_modality_specific_and_both_modalities_reach_the_logits():
    model = _tiny().eval()
    x = torch.rand(1, 2, 32, 32, 32)
    x_pet = x.clone()
    x_pet[:, 1] += torch.rand(32, 32, 32)
    with torch.inference_mode():
        assert torch.equal(model.stem_ct(x[:, :1]), model.stem_ct(x_pet[:, :1]))
        assert not torch.allclose(model.stem_pet(x[:, 1:]), model.stem_pet(x_pet[:, 1:]))
        assert not torch.allclose(model(x), model(x_pet))
        x_ct = x.clone()
        x_ct[:, 0] = 1.0 - x_ct[:, 0]
        assert not torch.allclose(model(x), model(x_ct))


def test_decoder_uses_a_skip_at_every_stage_down_to_full_resolution():
    model = _tiny()
    cfg = model.config
    skip_in = [b.block.conv.in_channels - b.up.out_channels for b in model.decoder]
    f, s = cfg.feature_size, cfg.stem_channels
    assert skip_in == [8 * f, 4 * f, 2 * f, f, 2 * s]
    assert model.head.out_channels == 3 and model.head.kernel_size == (1, 1, 1)


def test_training_step_reduces_loss_with_finite_grads():
    torch.manual_seed(0)
    model = _tiny().train()
    x = torch.rand(2, 2, 32, 32, 32)
    label = torch.zeros(2, 1, 32, 32, 32, dtype=torch.long)
    label[:, :, 8:20, 8:20, 8:20] = 1
    label[:, :, 22:28, 4:10, 20:28] = 2
    x[:, 1] += 2.0 * (label[:, 0] > 0)  # PET-bright lesions
    loss_fn = DiceCELoss(softmax=True, to_onehot_y=True, lambda_dice=0.5, lambda_ce=0.5)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    losses = []
    for _ in range(4):
        opt.zero_grad()
        loss = loss_fn(model(x), label)
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert any(n.startswith("stem_ct") for n in changed)
    assert any(n.startswith("encoder") for n in changed)
    assert any(n.startswith("decoder") for n in changed)


def test_flash_and_standard_attention_share_weights_and_agree():
    plain, flash = _tiny(flash=False, seed=1).eval(), _tiny(flash=True, seed=2).eval()
    assert flash.use_flash_attention and not plain.use_flash_attention
    x = torch.rand(1, 2, 32, 64, 32)  # stage 0 and 1 exceed the window: shifted-window masks are used
    flash.load_state_dict(plain.state_dict(), strict=True)
    with torch.inference_mode():
        a, b = plain(x), flash(x)
    assert (a - b).abs().max().item() < 1e-4
    plain2 = _tiny(flash=False, seed=3).eval()
    plain2.load_state_dict(flash.state_dict(), strict=True)
    with torch.inference_mode():
        assert (plain2(x) - b).abs().max().item() < 1e-4


def test_count_parameters_known_answer():
    model = torch.nn.Sequential(torch.nn.Conv3d(2, 3, 3), torch.nn.Linear(4, 5))
    assert count_parameters(model) == (2 * 3 * 27 + 3) + (4 * 5 + 5)  # 165 + 25
    model[1].weight.requires_grad_(False)
    assert count_parameters(model) == 165 + 5
    assert count_parameters(model, trainable_only=False) == 190


def test_paper_scale_config_builds_and_runs():
    config = ModelConfig()
    assert (config.feature_size, config.depths, config.num_heads, config.window_size) == (
        24,
        (2, 2, 2, 2),
        (3, 6, 12, 24),
        (7, 7, 7),
    )
    torch.manual_seed(0)
    model = build_model(config).eval()
    assert 4_000_000 < count_parameters(model) < 8_000_000  # 5.6 M measured; SwinUNETR fs=24 is 15.7 M
    start = time.perf_counter()
    with torch.inference_mode():
        y = model(torch.rand(1, 2, 64, 64, 64))
    assert y.shape == (1, 3, 64, 64, 64)
    assert torch.isfinite(y).all()
    assert time.perf_counter() - start < 60
