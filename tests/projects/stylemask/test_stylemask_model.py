"""Mask network, mixing, controlled layers and the official mask-network file format."""

from __future__ import annotations

import pytest
import torch

from common.stylegan2.generator import Generator
from projects.stylemask.model import (
    MaskNetwork,
    StyleMaskReenactor,
    controlled_layers,
    export_mask_network,
    load_mask_network_file,
    mix_styles,
)


def _tiny_generator() -> Generator:
    torch.manual_seed(0)
    return Generator(32, style_dim=32, n_mlp=2, channel_multiplier=1, channel_max=16).eval()


def _meta_layers_1024():
    with torch.device("meta"):
        g = Generator(1024, 512, 8, channel_multiplier=2)
    return g.style_layers()


def test_controlled_layers_at_1024_from_generator_metadata():
    layers = _meta_layers_1024()
    conv = [lay for lay in layers if lay.kind == "conv"]
    assert len(conv) == 17 and sum(lay.channels for lay in conv) == 6048
    assert [lay.channels for lay in conv] == [512] * 10 + [256, 256, 128, 128, 64, 64, 32]
    chosen = controlled_layers(layers, 12)
    assert len(chosen) == 12 and all(c.kind == "conv" for c in chosen)
    assert sum(c.channels for c in chosen) == 5632
    assert [c.key for c in chosen] == [f"network_{i:02d}" for i in range(12)]
    assert len(controlled_layers(layers, None)) == 17
    with_rgb = controlled_layers(layers, 12, mix_torgb=True)
    rgb = [c for c in with_rgb if c.kind == "torgb"]
    assert len(rgb) == 7  # ToRGB at 4 ... 256 px, up to the last controlled conv layer's resolution
    assert [c.position for c in with_rgb] == sorted(c.position for c in with_rgb)
    with pytest.raises(ValueError, match="num_layers_control"):
        controlled_layers(layers, 18)


def test_mask_predictor_init_and_shapes():
    torch.manual_seed(0)
    layers = controlled_layers(_meta_layers_1024(), 12)
    net = MaskNetwork(layers[:2])
    w0 = net["network_00"].masknet[0].weight.detach()
    assert w0.shape == (512, 512) and abs(float(w0.std()) - 0.01) < 1e-3
    s = [torch.randn(3, 512) for _ in range(3)]  # style list positions 0 (conv1), 1 (to_rgb1), 2 (first conv at 8 px)
    with torch.no_grad():
        masks = net(s, [torch.randn(3, 512) for _ in range(3)])
    assert [m.shape for m in masks] == [(3, 512), (3, 512)]
    assert all(((m > 0) & (m < 1)).all() for m in masks)
    # weights ~ N(0, 0.01): the initial mask stays near sigmoid(bias), about 0.5
    b = torch.sigmoid(net["network_00"].masknet[2].bias.detach())
    assert torch.allclose(masks[0], b.expand(3, -1), atol=0.1)
    assert abs(float(masks[0].mean()) - 0.5) < 0.02


def test_mixing_formula():
    layers = controlled_layers(_tiny_generator().style_layers(), 2)
    s = [torch.full((2, 16), 1.0) for _ in range(8)]
    t = [torch.full((2, 16), 3.0) for _ in range(8)]
    m = [torch.full((2, 16), 0.25), torch.full((2, 16), 1.0)]
    out = mix_styles(s, t, m, layers)
    assert torch.allclose(out[layers[0].position], torch.full((2, 16), 1.5))
    assert torch.allclose(out[layers[1].position], torch.full((2, 16), 3.0))
    untouched = set(range(len(s))) - {c.position for c in layers}
    assert all(out[i] is s[i] for i in untouched)


def _force_masks(reenactor: StyleMaskReenactor, value: float) -> None:
    with torch.no_grad():
        for net in reenactor.mask_net.values():
            net.masknet[2].weight.zero_()
            net.masknet[2].bias.fill_(-1e4 if value == 0 else 1e4)


def test_zero_mask_reproduces_source_exactly_and_fine_layers_stay_source():
    g = _tiny_generator()
    reen = StyleMaskReenactor(g, num_layers_control=3)
    _force_masks(reen, 0.0)
    torch.manual_seed(1)
    wp_s, wp_t = torch.randn(2, g.n_latent, 32), torch.randn(2, g.n_latent, 32)
    with torch.no_grad():
        img, mixed, masks = reen(wp_s, wp_t)
        assert all(float(m.abs().max()) == 0.0 for m in masks)
        assert torch.equal(img, g.synthesis(wp_s, noise="const"))
        _force_masks(reen, 1.0)
        img1, mixed1, _ = reen(wp_s, wp_t)
    s_s, s_t = g.styles_from_wplus(wp_s), g.styles_from_wplus(wp_t)
    controlled = {c.position for c in reen.layers}
    for i in range(len(s_s)):
        expect = s_t[i] if i in controlled else s_s[i]
        assert torch.allclose(mixed1[i], expect)
    # m = 1 is not the target image: fine layers and ToRGB styles stay with the source
    assert not torch.allclose(img1, g.synthesis(wp_t, noise="const"), atol=1e-3)


def test_mix_torgb_option_adds_torgb_networks():
    g = _tiny_generator()
    reen = StyleMaskReenactor(g, num_layers_control=3, mix_torgb=True)
    assert any(k.startswith("torgb_") for k in reen.mask_net.keys())
    img, _, _ = reen(torch.randn(1, g.n_latent, 32), torch.randn(1, g.n_latent, 32))
    assert img.shape == (1, 3, 32, 32)


def test_official_format_mask_network_file_loads(tmp_path):
    torch.manual_seed(0)
    layers = controlled_layers(_meta_layers_1024(), 12)
    # an official-format file written from plain tensors: {'step', 'mask_net', 'num_layers_control'}
    state = {}
    for i, c in enumerate(layers):
        for j in (0, 2):
            state[f"network_{i:02d}.masknet.{j}.weight"] = torch.randn(c.channels, c.channels) * 0.01
            state[f"network_{i:02d}.masknet.{j}.bias"] = torch.randn(c.channels)
    path = tmp_path / "mask_network_1024.pt"
    torch.save({"step": 99000, "mask_net": state, "num_layers_control": 12}, path)
    info = load_mask_network_file(path)
    assert info["num_layers_control"] == 12 and info["step"] == 99000
    net = MaskNetwork(layers)
    net.load_state_dict(info["state_dict"], strict=True)
    assert torch.equal(net["network_11"].masknet[2].bias, state["network_11.masknet.2.bias"])
    assert sum(p.numel() for p in net.parameters()) == sum(2 * c.channels**2 + 2 * c.channels for c in layers)
    x = torch.randn(1, 512)
    ref = torch.sigmoid(
        state["network_03.masknet.2.weight"]
        @ torch.relu(state["network_03.masknet.0.weight"] @ x[0] + state["network_03.masknet.0.bias"])
        + state["network_03.masknet.2.bias"]
    )
    assert torch.allclose(net["network_03"](x)[0], ref, atol=1e-6)


def test_export_and_reload_through_reenactor(tmp_path):
    g = _tiny_generator()
    a, b = StyleMaskReenactor(g, 3), StyleMaskReenactor(g, 3)
    export_mask_network(a.mask_net, tmp_path / "m.pt", step=5)
    b.load_official_masknet(tmp_path / "m.pt")
    for k, v in a.mask_net.state_dict().items():
        assert torch.equal(v, b.mask_net.state_dict()[k])
    with pytest.raises(ValueError, match="controls 3 layers"):
        StyleMaskReenactor(g, 4).load_official_masknet(tmp_path / "m.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pt"):
        load_mask_network_file(tmp_path / "bad.pt")
