"""Unit tests of the SpatimeINR building blocks (encoder, encoding, MLP, hypercube, rendering)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napari_spatimeinr.core.config import SpatimeINRParams, TrainConfig
from napari_spatimeinr.engines.paper.encoder import RCAB, ChannelAttention, Encoder
from napari_spatimeinr.engines.paper.encoding import encoded_dim, positional_encoding
from napari_spatimeinr.engines.paper.field import FieldMLP
from napari_spatimeinr.engines.paper.network import SpatimeINRNet, linear_base, window_frames
from napari_spatimeinr.engines.paper.radial import OMEGA3, radial_weights, render
from napari_spatimeinr.engines.paper.sampler import hypercube_offsets, unit_radius
from napari_spatimeinr.engines.presets import PRESETS, resolve_params

TINY = dict(
    latent_dim=8,
    encoder_features=4,
    encoder_groups=1,
    encoder_blocks=1,
    pe_frequencies=2,
    mlp_width=16,
    mlp_depth=5,
)


def test_encoder_shape_and_bounded_latents():
    enc = Encoder(frames=4, features=8, groups=2, blocks=2, latent_dim=16)
    out = enc(torch.randn(1, 4, 5, 6, 7) * 100)
    assert out.shape == (1, 16, 5, 6, 7)
    assert float(out.detach().abs().max()) <= math.pi + 1e-5
    # every voxel's code depends on its neighbourhood (3x3x3 convolutions), not on far voxels only
    x = torch.zeros(1, 4, 9, 9, 9)
    x2 = x.clone()
    x2[0, :, 4, 4, 4] = 1.0
    diff = (enc(x2) - enc(x)).abs().sum(1)[0]
    assert diff[4, 4, 4] > 0 and diff[4, 4, 5] > 0


def test_rcab_residual_and_channel_attention_gates():
    ca = ChannelAttention(8)
    x = torch.randn(2, 8, 3, 3, 3)
    gates = ca(x) / x
    assert torch.all((gates > 0) & (gates < 1))
    block = RCAB(8)
    for p in block.body[2].parameters():  # last conv zero -> identity
        torch.nn.init.zeros_(p)
    assert torch.allclose(block(x), x)


def test_positional_encoding_values():
    x = torch.tensor([[0.5, -1.0, 0.0, 0.25]])
    enc = positional_encoding(x, 3)
    assert enc.shape == (1, encoded_dim(4, 3)) == (1, 28)
    assert torch.allclose(enc[0, :4], x[0])
    # layout: [x, sin(2^0 pi x), cos(2^0 pi x), sin(2^1 pi x), ...]
    assert torch.allclose(enc[0, 4:8], torch.sin(math.pi * x[0]), atol=1e-6)
    assert torch.allclose(enc[0, 8:12], torch.cos(math.pi * x[0]), atol=1e-6)
    assert torch.allclose(enc[0, 12:16], torch.sin(2 * math.pi * x[0]), atol=1e-6)
    assert positional_encoding(x, 0).shape == (1, 4)


def test_field_mlp_skip_and_outputs():
    mlp = FieldMLP(in_dim=10, width=32, depth=8, skip=4)
    assert mlp.layers[4].in_features == 32 + 10  # input re-injected after the 4th layer
    c, sigma = mlp(torch.randn(7, 10))
    assert c.shape == sigma.shape == (7,)
    assert torch.all(sigma >= 0)
    z = FieldMLP(in_dim=10, width=8, depth=2, zero_init=True)
    c, _ = z(torch.randn(3, 10))
    assert torch.all(c == 0)


def test_hypercube_grid_and_jitter():
    sp = torch.tensor([0.5, 1.0, 2.0, 1.0])
    off = hypercube_offsets(2, sp, count=3)
    assert off.shape == (3, 16, 4)
    # regular grid: cell centres at +-1/4 of the side on every axis, all at the same radius
    assert torch.allclose(off.abs(), (sp / 4).expand_as(off))
    r = unit_radius(off, sp)
    assert torch.allclose(r, torch.full_like(r, 0.5))
    g = torch.Generator().manual_seed(0)
    j = hypercube_offsets(2, sp, count=50, jitter=True, generator=g)
    assert torch.all(j.abs() <= sp / 2 + 1e-6)
    assert torch.all(torch.sign(j) == torch.sign(off[:1]))  # each sample stays in its cell
    assert j.std() > 0
    assert torch.all(hypercube_offsets(1, sp) == 0)


def test_radial_weights_hand_computed():
    sigma = torch.tensor([[1.0, 2.0]])
    r = torch.tensor([[0.5, 0.25]])  # out of order on purpose
    w = radial_weights(sigma, r)
    dr = 0.5  # r_max = 1 split into M = 2 sub-intervals
    # sorted by radius: sample 1 (r=0.25, sigma=2) first, then sample 0
    w_first = OMEGA3 * 1.0 * (1 - math.exp(-2.0 * dr))
    t1 = math.exp(-OMEGA3 * (2.0 * 0.25**3 * dr))
    w_second = OMEGA3 * t1 * (1 - math.exp(-1.0 * dr))
    assert w[0, 1].item() == pytest.approx(w_first, rel=1e-6)
    assert w[0, 0].item() == pytest.approx(w_second, rel=1e-6)
    c = torch.tensor([[0.3, -0.7]])
    assert render(c, sigma, r).item() == pytest.approx(0.3 * w_second - 0.7 * w_first, rel=1e-6)
    # zero density: nothing rendered; one sample: the sample itself
    assert torch.all(radial_weights(torch.zeros(1, 16), torch.rand(1, 16)) == 0)
    assert render(torch.tensor([[0.25]]), torch.tensor([[3.0]]), torch.tensor([[0.0]])) == 0.25


def test_window_frames_clamped():
    assert window_frames(0, 5) == [0, 0, 1, 2]
    assert window_frames(3, 5) == [2, 3, 4, 4]
    assert window_frames(0, 1) == [0, 0, 0, 0]


def test_linear_base_matches_numpy():
    rng = np.random.default_rng(0)
    w = torch.from_numpy(rng.random((4, 3, 4, 5)).astype(np.float32))
    p = torch.tensor([[0.0, 0.0, 0.0], [1.5, 2.25, 3.5], [2.0, 3.0, 4.0]])
    f = torch.tensor([0.0, 0.25, 1.0])
    got = linear_base(w, p, f).numpy()
    from scipy.ndimage import map_coordinates

    a, b = w[1].numpy(), w[2].numpy()
    exp = [
        (1 - fv) * map_coordinates(a, pv[:, None], order=1)[0]
        + fv * map_coordinates(b, pv[:, None], order=1)[0]
        for pv, fv in zip(p.numpy(), f.numpy(), strict=True)
    ]
    assert np.allclose(got, exp, atol=1e-5)


def test_untrained_residual_network_equals_linear_interpolation():
    params = SpatimeINRParams(**TINY, residual=True, hypercube_n=1)
    net = SpatimeINRNet(params)
    w = torch.rand(4, 3, 4, 5)
    lat = net.encode(w)
    assert lat.shape == (8, 3, 4, 5)
    p = torch.rand(20, 3) * torch.tensor([2.0, 3.0, 4.0])
    f = torch.rand(20)
    out = net.query(lat, w, p, f, torch.ones(4))
    assert torch.allclose(out, linear_base(w, p, f), atol=1e-6)


def test_paper_network_renders_hypercube_and_has_gradients():
    params = SpatimeINRParams(**TINY, hypercube_n=2)
    net = SpatimeINRNet(params)
    w = torch.rand(4, 3, 4, 5)
    lat = net.encode(w)
    g = torch.Generator().manual_seed(0)
    out = net.query(lat, w, torch.rand(6, 3), torch.rand(6), torch.ones(4), True, g)
    assert out.shape == (6,)
    out.sum().backward()
    assert net.encoder.head.weight.grad is not None
    assert net.field.layers[0].weight.grad.abs().sum() > 0


def test_presets_and_overrides():
    paper = resolve_params(TrainConfig(preset="paper"))
    assert (paper.latent_dim, paper.mlp_depth, paper.mlp_width, paper.pe_frequencies) == (
        128,
        8,
        256,
        10,
    )
    assert paper.hypercube_n == 2 and paper.batch_size == 2048 and not paper.residual
    assert (paper.lr, paper.lr_final, paper.weight_decay) == (2e-3, 2e-5, 1e-6)
    fast = resolve_params(TrainConfig(params={"latent_dim": 12}))
    assert (
        fast.latent_dim == 12 and fast.residual and fast.mlp_width == PRESETS["fast"]["mlp_width"]
    )
