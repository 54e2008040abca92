"""Generator: shapes, noise modes, truncation, style space round trip, weight offsets, rosinality call convention."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from common.stylegan2 import Generator

D = 32  # tiny style_dim / channel cap so that every test runs in well under a second


def tiny(size: int = 32, seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    g = Generator(size, style_dim=D, n_mlp=2, channel_max=D)
    # Non-zero noise strengths and biases so the tests see the noise and bias paths.
    with torch.no_grad():
        for name, p in g.named_parameters():
            if name.endswith("noise.weight") or name.endswith("activate.bias") or name.endswith(".bias"):
                p.normal_(0, 0.3)
    return g.eval()


def test_shapes_and_counts():
    g = tiny(32)
    assert g.n_latent == 8 and g.num_layers == 7
    z = torch.randn(3, D)
    img, lat = g([z], return_latents=True)
    assert img.shape == (3, 3, 32, 32) and lat.shape == (3, 8, D)
    assert g([z])[1] is None
    assert g.mapping(z).shape == (3, D)
    assert g.mean_latent(64).shape == (1, D)
    g16 = tiny(16)
    assert g16.synthesis(torch.randn(2, g16.n_latent, D)).shape == (2, 3, 16, 16)
    assert Generator(8, style_dim=8, n_mlp=1, channel_max=8).synthesis(torch.randn(1, 8)).shape == (1, 3, 8, 8)
    with pytest.raises(ValueError, match="power of two"):
        Generator(48, style_dim=8, channel_max=8)


def test_full_size_layer_tables_match_spec():
    # Counts from the spec's table (stylegan2_ops.md section 4), checked on the meta device (no memory).
    with torch.device("meta"):
        g1024 = Generator(1024)
        g256 = Generator(256, channel_multiplier=1)
        g256c2 = Generator(256)
    assert g1024.n_latent == 18 and g256.n_latent == 14
    for g, n_layers, n_ch, n_conv_ch in ((g1024, 26, 9088, 6048), (g256c2, 20, 8704, 5760), (g256, 20, 7424, 4928)):
        layers = g.style_layers()
        assert len(layers) == n_layers
        assert sum(lay.channels for lay in layers) == n_ch
        assert sum(lay.channels for lay in layers if lay.kind == "conv") == n_conv_ch
    widths = [lay.channels for lay in g1024.style_layers()]
    assert widths == [512] * 15 + [256] * 3 + [128] * 3 + [64] * 3 + [32] * 2
    # StyleMask's conv-only split sections
    assert [lay.channels for lay in g1024.style_layers() if lay.kind == "conv"] == [512] * 10 + [
        256, 256, 128, 128, 64, 64, 32,
    ]  # fmt: skip
    # HyperReenact's layers_to_tune are exactly the non-ToRGB forward indices, with its [k, in, out] table
    convs = [lay for lay in g256.style_layers() if lay.kind == "conv"]
    assert [lay.index for lay in convs] == [0, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18]
    assert [lay.index for lay in g256.style_layers() if lay.kind == "torgb"] == [1, 4, 7, 10, 13, 16, 19]
    shapes = g256.conv_weight_shapes()
    assert shapes[:7] == [(512, 512, 3, 3)] * 7
    assert shapes[7:] == [(256, 512, 3, 3), (256, 256, 3, 3), (128, 256, 3, 3), (128, 128, 3, 3),
                          (64, 128, 3, 3), (64, 64, 3, 3)]  # fmt: skip
    # W+ rows: conv1 -> 0, to_rgb1 -> 1, block k: 2k+1, 2k+2, 2k+3 (ToRGB shares its row with the next up-conv)
    assert [lay.w_index for lay in g256.style_layers()][:8] == [0, 1, 1, 2, 3, 3, 4, 5]
    assert sum(p.numel() for p in g1024.parameters()) == pytest.approx(30.4e6, rel=0.01)


def test_noise_modes():
    g = tiny()
    w = torch.randn(2, g.n_latent, D)
    a, b = g.synthesis(w, noise="const"), g.synthesis(w, noise="const")
    assert torch.equal(a, b)
    torch.manual_seed(1)
    r1 = g.synthesis(w, noise="random")
    r2 = g.synthesis(w, noise="random")
    assert not torch.allclose(r1, r2)
    consts = [getattr(g.noises, f"noise_{i}") for i in range(g.num_layers)]
    assert torch.equal(g.synthesis(w, noise=consts), a)
    # rosinality convention: randomize_noise=False uses the buffers
    assert torch.equal(g([w], input_is_latent=True, randomize_noise=False)[0], a)
    # explicit per-sample noise changes only where it differs
    own = [torch.randn(2, 1, n.shape[-1], n.shape[-1]) for n in consts]
    assert not torch.allclose(g.synthesis(w, noise=own), a)
    with pytest.raises(ValueError, match="noise list must have 7"):
        g.synthesis(w, noise=consts[:-1])
    with pytest.raises(ValueError, match=r"noise\[2\]"):
        g.synthesis(w, noise=consts[:2] + [torch.randn(1, 1, 4, 4)] + consts[3:])


def test_truncation():
    g = tiny()
    z = torch.randn(2, D)
    mean = g.mean_latent(256)
    w = g.mapping(z)
    # psi = 1 is the identity
    i1, l1 = g([z], truncation=1, truncation_latent=mean, return_latents=True, randomize_noise=False)
    i0, l0 = g([z], return_latents=True, randomize_noise=False)
    assert torch.equal(i1, i0) and torch.equal(l1, l0)
    # psi = 0.7 moves toward the mean: mean + 0.7 (w - mean), on every row
    _, lt = g([z], truncation=0.7, truncation_latent=mean, return_latents=True)
    torch.testing.assert_close(lt, (mean + 0.7 * (w - mean)).unsqueeze(1).expand(-1, g.n_latent, -1))
    torch.testing.assert_close(g.mapping(z, 0.5, mean), mean + 0.5 * (w - mean))
    with pytest.raises(ValueError, match="truncation_latent"):
        g([z], truncation=0.5)
    gen = torch.Generator().manual_seed(3)
    m1 = g.mean_latent(128, generator=gen)
    m2 = g.mean_latent(128, generator=torch.Generator().manual_seed(3))
    assert torch.equal(m1, m2)


def test_rosinality_call_convention():
    g = tiny()
    z1, z2 = torch.randn(2, D), torch.randn(2, D)
    _, lat = g([z1, z2], inject_index=3, return_latents=True, randomize_noise=False)
    w1, w2 = g.mapping(z1), g.mapping(z2)
    assert torch.equal(lat[:, :3], w1.unsqueeze(1).expand(-1, 3, -1))
    assert torch.equal(lat[:, 3:], w2.unsqueeze(1).expand(-1, g.n_latent - 3, -1))
    # W and W+ inputs give the same image as z
    img_z = g([z1], randomize_noise=False)[0]
    assert torch.equal(g([w1], input_is_latent=True, randomize_noise=False)[0], img_z)
    wplus = w1.unsqueeze(1).repeat(1, g.n_latent, 1)
    assert torch.equal(g([wplus], input_is_latent=True, randomize_noise=False)[0], img_z)
    assert torch.equal(g.synthesis(wplus), img_z)
    assert torch.equal(g(z1, randomize_noise=False)[0], img_z)  # a bare tensor is accepted
    with pytest.raises(ValueError, match=r"W\+ must have shape"):
        g.synthesis(torch.randn(2, g.n_latent - 1, D))


def test_style_space_round_trip_exact():
    g = tiny()
    wplus = torch.randn(2, g.n_latent, D)
    ref = g.synthesis(wplus)
    styles = g.styles_from_wplus(wplus)
    layers = g.style_layers()
    assert [s.shape for s in styles] == [(2, lay.channels) for lay in layers]
    assert torch.equal(g.synthesis_from_styles(styles), ref)
    # each style is the layer's affine map of its W+ row
    for lay, s in zip(layers, styles):
        mod = g.get_submodule(lay.name).conv.modulation
        assert torch.equal(s, mod(wplus[:, lay.w_index]))
    # StyleMask: conv-only styles, ToRGB from W+
    conv_styles = [s for lay, s in zip(layers, styles) if lay.kind == "conv"]
    assert torch.equal(g.synthesis_from_styles(conv_styles, wplus=wplus, torgb_from_wplus=True), ref)
    # ToRGB from W+ ignores the ToRGB entries of a full list
    junk = [torch.randn_like(s) if lay.kind == "torgb" else s for lay, s in zip(layers, styles)]
    assert torch.equal(g.synthesis_from_styles(junk, wplus=wplus, torgb_from_wplus=True), ref)
    assert not torch.allclose(g.synthesis_from_styles(junk), ref)
    # editing one channel of one style changes the image
    edited = [s.clone() for s in styles]
    edited[3][:, 0] += 5
    assert not torch.allclose(g.synthesis_from_styles(edited), ref)
    with pytest.raises(ValueError, match="torgb_from_wplus"):
        g.synthesis_from_styles(conv_styles)
    with pytest.raises(ValueError, match=r"layer 2 \(convs.0\)"):
        g.synthesis_from_styles(styles[:2] + [torch.randn(2, D + 1)] + styles[3:])


def _modconv_reference(x, weight, scale, s, delta, demodulate, upsample, blur):
    """Per-sample loop: w_b = scale * W * (1 + delta_b) * s_b, demodulated over (in, k, k)."""
    outs = []
    for b in range(x.shape[0]):
        wb = scale * weight[0] * (1 + (delta[b] if delta is not None else 0)) * s[b].view(1, -1, 1, 1)
        if demodulate:
            wb = wb / torch.sqrt(wb.pow(2).sum(dim=(1, 2, 3), keepdim=True) + 1e-8)
        if upsample:
            outs.append(blur(F.conv_transpose2d(x[b : b + 1], wb.transpose(0, 1), stride=2)))
        else:
            outs.append(F.conv2d(x[b : b + 1], wb, padding=weight.shape[-1] // 2))
    return torch.cat(outs)


@pytest.mark.parametrize("name", ["conv1", "convs.0", "convs.1", "to_rgbs.0"])
def test_modulated_conv_against_per_sample_formula(name):
    g = tiny()
    conv = g.get_submodule(name).conv
    torch.manual_seed(5)
    x = torch.randn(3, conv.in_channel, 8, 8, dtype=torch.float64)
    s = torch.randn(3, conv.in_channel, dtype=torch.float64)
    delta = 0.3 * torch.randn(3, *conv.weight.shape[1:], dtype=torch.float64)
    conv = conv.double()
    blur = getattr(conv, "blur", None)
    for d in (None, delta):
        ref = _modconv_reference(x, conv.weight, conv.scale, s, d, conv.demodulate, conv.upsample, blur)
        torch.testing.assert_close(conv(x, s=s, weight_delta=d), ref)
        if d is None:
            conv.fused = False
            torch.testing.assert_close(conv(x, s=s), ref)
            conv.fused = True


def test_weight_offsets():
    g = tiny().requires_grad_(False)  # nothing records: every conv takes the grouped path, offsets or not
    wplus = torch.randn(2, g.n_latent, D)
    ref = g.synthesis(wplus)
    shapes = g.conv_weight_shapes()
    assert len(shapes) == 7
    zeros = [torch.zeros(2, *s) for s in shapes]
    assert torch.equal(g.synthesis(wplus, weight_deltas=zeros), ref)
    assert torch.equal(g.synthesis(wplus, weight_deltas=[None] * len(shapes)), ref)
    # HyperReenact's 20-style indexing (all modulated layers, ToRGB entries None)
    full = [None] * len(g.style_layers())
    assert torch.equal(g([wplus], input_is_latent=True, randomize_noise=False, weights_deltas=full)[0], ref)
    # a constant offset on a demodulated conv is removed by demodulation: applied before it, not after
    const = [None] * len(shapes)
    const[2] = torch.full((1, *shapes[2]), 0.5)
    torch.testing.assert_close(g.synthesis(wplus, weight_deltas=const), ref, atol=1e-5, rtol=1e-5)
    # per-channel offsets (HyperReenact's per (out, in) pair, broadcast over k x k) change the image
    chan = [None] * len(shapes)
    chan[2] = 0.5 * torch.randn(2, shapes[2][0], shapes[2][1], 1, 1)
    assert not torch.allclose(g.synthesis(wplus, weight_deltas=chan), ref)
    # styles path takes offsets too
    assert torch.equal(g.synthesis_from_styles(g.styles_from_wplus(wplus), weight_deltas=chan),
                       g.synthesis(wplus, weight_deltas=chan))  # fmt: skip
    with pytest.raises(ValueError, match="7 non-ToRGB convs"):
        g.synthesis(wplus, weight_deltas=zeros[:-1])
    bad = list(zeros)
    bad[1] = torch.zeros(2, 5, 5, 3, 3)
    with pytest.raises(ValueError, match=r"layer 2 \(convs.0\)"):
        g.synthesis(wplus, weight_deltas=bad)


def test_gradients_reach_wplus_styles_and_offsets():
    g = tiny()
    g.requires_grad_(False)
    wplus = torch.randn(2, g.n_latent, D, requires_grad=True)
    deltas = [torch.zeros(2, *s, requires_grad=True) for s in g.conv_weight_shapes()]
    g.synthesis(wplus, weight_deltas=deltas).square().mean().backward()
    assert wplus.grad is not None and (wplus.grad.abs().sum(dim=(0, 2)) > 0).all()
    assert all(d.grad is not None and d.grad.abs().sum() > 0 for d in deltas)
    styles = [s.detach().requires_grad_() for s in g.styles_from_wplus(wplus.detach())]
    g.synthesis_from_styles(styles).sum().backward()
    assert all(s.grad is not None and s.grad.abs().sum() > 0 for s in styles)


def test_generator_trains_its_parameters():
    g = tiny(16)
    g.train()
    img, _ = g([torch.randn(2, D)])
    img.mean().backward()
    grads = {n: p.grad for n, p in g.named_parameters()}
    assert all(v is not None for v in grads.values()), [n for n, v in grads.items() if v is None]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    g = tiny(32)
    wplus = torch.randn(2, g.n_latent, D)
    deltas = [0.1 * torch.randn(2, *s) for s in g.conv_weight_shapes()]
    ref = g.synthesis(wplus, weight_deltas=deltas)
    gc = g.cuda()
    out = gc.synthesis(wplus.cuda(), weight_deltas=[d.cuda() for d in deltas]).cpu()
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    m = gc.mean_latent(16, generator=torch.Generator().manual_seed(0))
    assert m.device.type == "cuda"


def _upfirdn_up2(x, k, pad0, pad1):
    """Zero-insertion upsampling by 2, padding (pad0, pad1) on both axes, convolution with ``k``: written out."""
    b, c, h, w = x.shape
    up = x.new_zeros(b, c, 2 * h, 2 * w)
    up[:, :, ::2, ::2] = x
    up = F.pad(up, (pad0, pad1, pad0, pad1))
    return F.conv2d(up.reshape(b * c, 1, *up.shape[-2:]), k.flip(0, 1)[None, None]).reshape(b, c, 2 * h, 2 * w)


def _rosinality_synthesis_reference(sd, wplus, noises, dim):
    """rosinality's synthesis network recomputed from the state dict alone (spec section 4), sample by sample."""

    def modconv(x, w, p, demod, up):
        weight = sd[f"{p}.conv.weight"][0]
        s = F.linear(w, sd[f"{p}.conv.modulation.weight"] / dim**0.5, sd[f"{p}.conv.modulation.bias"])
        outs = []
        for b in range(x.shape[0]):
            wb = weight / (weight.shape[1] * weight.shape[-1] ** 2) ** 0.5 * s[b].view(1, -1, 1, 1)
            if demod:
                wb = wb * torch.rsqrt(wb.square().sum((1, 2, 3), keepdim=True) + 1e-8)
            if up:
                y = F.conv_transpose2d(x[b : b + 1], wb.transpose(0, 1), stride=2)
                y = F.pad(y, (1, 1, 1, 1))
                k = sd[f"{p}.conv.blur.kernel"]
                c = y.shape[1]
                y = F.conv2d(y, k.flip(0, 1)[None, None].expand(c, 1, -1, -1), groups=c)
            else:
                y = F.conv2d(x[b : b + 1], wb, padding=weight.shape[-1] // 2)
            outs.append(y)
        return torch.cat(outs)

    def styled(x, w, p, noise, up=False):
        y = modconv(x, w, p, True, up) + sd[f"{p}.noise.weight"] * noise
        return F.leaky_relu(y + sd[f"{p}.activate.bias"].view(1, -1, 1, 1), 0.2) * 2**0.5

    def torgb(x, w, p, skip):
        y = modconv(x, w, p, False, False) + sd[f"{p}.bias"]
        return y if skip is None else y + _upfirdn_up2(skip, sd[f"{p}.upsample.kernel"], 2, 1)

    x = sd["input.input"].repeat(wplus.shape[0], 1, 1, 1)
    x = styled(x, wplus[:, 0], "conv1", noises[0])
    skip = torgb(x, wplus[:, 1], "to_rgb1", None)
    n_blocks = sum(1 for k in sd if k.startswith("to_rgbs.") and k.endswith(".upsample.kernel"))
    for k in range(n_blocks):
        x = styled(x, wplus[:, 2 * k + 1], f"convs.{2 * k}", noises[2 * k + 1], up=True)
        x = styled(x, wplus[:, 2 * k + 2], f"convs.{2 * k + 1}", noises[2 * k + 2])
        skip = torgb(x, wplus[:, 2 * k + 3], f"to_rgbs.{k}", skip)
    return skip


def test_synthesis_equals_rosinality_formula_from_state_dict():
    g = tiny(32).double()
    sd = g.state_dict()
    wplus = torch.randn(2, g.n_latent, D, dtype=torch.float64)
    noises = [sd[f"noises.noise_{i}"] for i in range(g.num_layers)]
    ref = _rosinality_synthesis_reference(sd, wplus, noises, D)
    torch.testing.assert_close(g.synthesis(wplus, noise="const"), ref)
