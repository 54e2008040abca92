"""Discriminator: rosinality's keys and shapes (hand-written list), a forward written from the layout, minibatch stddev,
sizes, and the channel_base width rule shared with the generator."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from common.stylegan2 import CheckpointError, Discriminator, Generator, load_generator
from common.stylegan2.checkpoints import infer_generator_config, load_state_dict_checked
from common.stylegan2.discriminator import minibatch_stddev
from common.stylegan2.generator import generator_channels


def rosinality_d_keys(size: int, ch: dict[int, int]) -> dict[str, tuple]:
    """Key -> shape of rosinality's ``Discriminator``, written from its model.py layout (not from our module)."""
    keys: dict[str, tuple] = {"convs.0.0.weight": (ch[size], 3, 1, 1), "convs.0.1.bias": (ch[size],)}
    for k, log_res in enumerate(range(int(math.log2(size)), 2, -1), start=1):
        cin, cout = ch[2**log_res], ch[2 ** (log_res - 1)]
        p = f"convs.{k}"
        keys.update({
            f"{p}.conv1.0.weight": (cin, cin, 3, 3), f"{p}.conv1.1.bias": (cin,),
            f"{p}.conv2.0.kernel": (4, 4), f"{p}.conv2.1.weight": (cout, cin, 3, 3), f"{p}.conv2.2.bias": (cout,),
            f"{p}.skip.0.kernel": (4, 4), f"{p}.skip.1.weight": (cout, cin, 1, 1),
        })  # fmt: skip
    c4 = ch[4]
    keys.update({
        "final_conv.0.weight": (c4, c4 + 1, 3, 3), "final_conv.1.bias": (c4,),
        "final_linear.0.weight": (c4, c4 * 16), "final_linear.0.bias": (c4,),
        "final_linear.1.weight": (1, c4), "final_linear.1.bias": (1,),
    })  # fmt: skip
    return keys


def test_keys_and_shapes_small_hand_list():
    d = Discriminator(16, channel_max=32)
    ours = {k: tuple(v.shape) for k, v in d.state_dict().items()}
    expected = {
        "convs.0.0.weight": (32, 3, 1, 1), "convs.0.1.bias": (32,),
        "convs.1.conv1.0.weight": (32, 32, 3, 3), "convs.1.conv1.1.bias": (32,),
        "convs.1.conv2.0.kernel": (4, 4), "convs.1.conv2.1.weight": (32, 32, 3, 3), "convs.1.conv2.2.bias": (32,),
        "convs.1.skip.0.kernel": (4, 4), "convs.1.skip.1.weight": (32, 32, 1, 1),
        "convs.2.conv1.0.weight": (32, 32, 3, 3), "convs.2.conv1.1.bias": (32,),
        "convs.2.conv2.0.kernel": (4, 4), "convs.2.conv2.1.weight": (32, 32, 3, 3), "convs.2.conv2.2.bias": (32,),
        "convs.2.skip.0.kernel": (4, 4), "convs.2.skip.1.weight": (32, 32, 1, 1),
        "final_conv.0.weight": (32, 33, 3, 3), "final_conv.1.bias": (32,),
        "final_linear.0.weight": (32, 512), "final_linear.0.bias": (32,),
        "final_linear.1.weight": (1, 32), "final_linear.1.bias": (1,),
    }  # fmt: skip
    assert ours == expected
    assert list(ours) == list(expected)  # same order as rosinality's registration


@pytest.mark.parametrize("size,cm", [(1024, 2), (256, 1), (256, 2)])
def test_full_size_keys_match_rosinality(size, cm):
    with torch.device("meta"):
        d = Discriminator(size, channel_multiplier=cm)
    wide = {64: 256 * cm, 128: 128 * cm, 256: 64 * cm, 512: 32 * cm, 1024: 16 * cm}
    ch = {2**r: 512 if 2**r <= 32 else wide[2**r] for r in range(2, int(math.log2(size)) + 1)}
    assert {k: tuple(v.shape) for k, v in d.state_dict().items()} == rosinality_d_keys(size, ch)


def test_rosinality_d_loads_strictly_and_bad_keys_are_named():
    ch = generator_channels(32, 2, 16)
    torch.manual_seed(0)
    sd = {k: torch.randn(s) for k, s in rosinality_d_keys(32, ch).items()}
    d = Discriminator(32, channel_max=16)
    load_state_dict_checked(d, sd, "ckpt.pt [d]")
    assert torch.equal(d.final_linear[1].weight, sd["final_linear.1.weight"])
    bad = dict(sd)
    bad["convs.1.conv1.0.weightx"] = bad.pop("convs.1.conv1.0.weight")
    with pytest.raises(CheckpointError, match=r"ckpt.pt \[d\].*missing keys: \['convs.1.conv1.0.weight'\]"):
        load_state_dict_checked(d, bad, "ckpt.pt [d]")
    bad = dict(sd)
    bad["final_conv.0.weight"] = torch.randn(16, 16, 3, 3)
    with pytest.raises(CheckpointError, match=r"final_conv.0.weight: file \(16, 16, 3, 3\) vs model \(16, 17, 3, 3\)"):
        load_state_dict_checked(d, bad, "ckpt.pt [d]")


def _blur_down(x: torch.Tensor, pad: tuple[int, int]) -> torch.Tensor:
    """rosinality's Blur: pad (p0, p1) both axes, then convolve every channel with the [1,3,3,1] outer product / 64."""
    k = torch.tensor([1.0, 3, 3, 1])
    k = (k[:, None] * k[None, :]) / 64
    c = x.shape[1]
    return F.conv2d(F.pad(x, [pad[0], pad[1], pad[0], pad[1]]), k.flip([0, 1]).expand(c, 1, 4, 4), groups=c)


def _reference_forward(sd: dict[str, torch.Tensor], x: torch.Tensor, size: int) -> torch.Tensor:
    """The discriminator written out with plain torch ops from the state dict and rosinality's layout."""

    def conv(x, w, stride=1, padding=0, bias=None):
        return F.conv2d(x, w / math.sqrt(w[0].numel()), bias=bias, stride=stride, padding=padding)

    def lrelu(x, b):
        return F.leaky_relu(x + b.view(1, -1, *([1] * (x.ndim - 2))), 0.2) * math.sqrt(2)

    h = lrelu(conv(x, sd["convs.0.0.weight"]), sd["convs.0.1.bias"])
    for k in range(1, int(math.log2(size)) - 1):
        p = f"convs.{k}"
        y = lrelu(conv(h, sd[f"{p}.conv1.0.weight"], padding=1), sd[f"{p}.conv1.1.bias"])
        y = lrelu(conv(_blur_down(y, (2, 2)), sd[f"{p}.conv2.1.weight"], stride=2), sd[f"{p}.conv2.2.bias"])
        s = conv(_blur_down(h, (1, 1)), sd[f"{p}.skip.1.weight"], stride=2)
        h = (y + s) / math.sqrt(2)
    b, c, hh, ww = h.shape
    g = min(b, 4)
    std = torch.stack([h[[n % (b // g) + j * (b // g) for j in range(g)]].var(0, unbiased=False) for n in range(b)])
    std = (std + 1e-8).sqrt().mean([1, 2, 3]).view(b, 1, 1, 1).expand(b, 1, hh, ww)
    h = lrelu(conv(torch.cat([h, std], 1), sd["final_conv.0.weight"], padding=1), sd["final_conv.1.bias"])
    w0, w1 = sd["final_linear.0.weight"], sd["final_linear.1.weight"]
    h = lrelu(h.flatten(1) @ (w0 / math.sqrt(w0.shape[1])).T, sd["final_linear.0.bias"])
    return h @ (w1 / math.sqrt(w1.shape[1])).T + sd["final_linear.1.bias"]


@pytest.mark.parametrize("size,batch", [(8, 4), (16, 8), (32, 2)])
def test_forward_matches_hand_written_layout(size, batch):
    torch.manual_seed(1)
    d = Discriminator(size, channel_max=8)
    with torch.no_grad():  # non-zero biases so that every term counts
        for name, p in d.named_parameters():
            if name.endswith("bias"):
                p.normal_()
    x = torch.randn(batch, 3, size, size)
    expected = _reference_forward(d.state_dict(), x, size)
    torch.testing.assert_close(d(x), expected, rtol=1e-4, atol=1e-4)


def test_minibatch_stddev_by_hand():
    x = torch.randn(8, 6, 2, 3)
    out = minibatch_stddev(x, group_size=4, num_features=2)
    assert out.shape == (8, 8, 2, 3)
    torch.testing.assert_close(out[:, :6], x)
    for n in range(8):
        members = x[[n % 2, n % 2 + 2, n % 2 + 4, n % 2 + 6]]  # 8 / 4 = 2 groups: n mod 2
        for f in range(2):
            part = members[:, 3 * f : 3 * f + 3]
            expected = (((part - part.mean(0)) ** 2).mean(0) + 1e-8).sqrt().mean()
            torch.testing.assert_close(out[n, 6 + f], expected.expand(2, 3))
    with pytest.raises(ValueError, match="multiple of the group size 4"):
        minibatch_stddev(torch.randn(6, 4, 2, 2))
    assert minibatch_stddev(torch.randn(3, 4, 2, 2)).shape == (3, 5, 2, 2)  # B < 4: one group of B


@pytest.mark.parametrize("size", [8, 16, 32, 64])
def test_sizes_and_gradients(size):
    d = Discriminator(size, channel_max=8)
    x = torch.randn(4, 3, size, size, requires_grad=True)
    out = d(x)
    assert out.shape == (4, 1)
    (g,) = torch.autograd.grad(out.sum(), x, create_graph=True)  # R1 needs the double backward
    g.pow(2).sum().backward()
    # A bias that reaches dD/dx only through a leaky ReLU's slope mask has a zero second derivative: bias_act
    # then gives no gradient (as rosinality's and NVIDIA's CUDA ops), plain torch would give zeros.
    mask_only = {"final_conv.1.bias", "final_linear.0.bias", "final_linear.1.bias"}
    assert all(p.grad is not None for n, p in d.named_parameters() if n not in mask_only)
    assert all(p.grad is None or not p.grad.any() for n, p in d.named_parameters() if n in mask_only)


def test_bad_sizes_and_inputs():
    for size in (4, 12, 100):
        with pytest.raises(ValueError, match="power of two >= 8"):
            Discriminator(size)
    with pytest.raises(ValueError, match=r"expects \[B, 3, 16, 16\]"):
        Discriminator(16, channel_max=8)(torch.randn(4, 3, 8, 8))


def test_channel_base_rule_and_defaults():
    for cm in (1, 2):
        for size in (8, 64, 256, 1024):
            assert generator_channels(size, cm) == generator_channels(size, cm, 512, 16384 * cm)
    assert generator_channels(64, 2, 128, 4096) == {4: 128, 8: 128, 16: 128, 32: 128, 64: 64}
    d = Discriminator(64, channel_max=128, channel_base=4096)
    g = Generator(64, style_dim=16, n_mlp=1, channel_max=128, channel_base=4096)
    assert d.channels == g.channels == {4: 128, 8: 128, 16: 128, 32: 128, 64: 64}
    assert d.state_dict()["convs.0.0.weight"].shape == (64, 3, 1, 1)
    with pytest.raises(ValueError, match="gives no channels at 64 px"):
        generator_channels(64, 2, 128, 32)


def test_load_generator_infers_channel_base(tmp_path):
    g = Generator(32, style_dim=16, n_mlp=2, channel_max=32, channel_base=512)
    assert g.channels == {4: 32, 8: 32, 16: 32, 32: 16}
    cfg = infer_generator_config(g.state_dict())
    assert cfg["channel_base"] == 512 and cfg["channel_max"] == 32
    torch.save({"g_ema": g.state_dict()}, tmp_path / "g.pt")
    loaded = load_generator(tmp_path / "g.pt")
    assert loaded.channels == g.channels
    z = torch.randn(2, 16)
    torch.testing.assert_close(loaded([z], randomize_noise=False)[0], g([z], randomize_noise=False)[0])
