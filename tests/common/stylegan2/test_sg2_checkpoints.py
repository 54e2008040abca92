"""Checkpoint import: rosinality files (strict, allow-listed Namespace), clear key errors, NVIDIA conversion."""

from __future__ import annotations

import argparse
import math
import pickle

import pytest
import torch
import torch.nn.functional as F

from common.stylegan2 import (
    CheckpointError,
    Generator,
    convert_nvidia_state_dict,
    load_generator,
    load_nvidia_pkl,
    to_nvidia_state_dict,
)
from common.stylegan2.checkpoints import infer_generator_config


def spec_channels(size: int, cm: int, cap: int = 512) -> dict[int, int]:
    """Widths from the spec: 512 for 4-32 px, then 256cm, 128cm, 64cm, 32cm, 16cm (capped for tiny models)."""
    wide = {64: 256 * cm, 128: 128 * cm, 256: 64 * cm, 512: 32 * cm, 1024: 16 * cm}
    return {2**r: min(cap, 512 if 2**r <= 32 else wide[2**r]) for r in range(2, int(math.log2(size)) + 1)}


def rosinality_key_shapes(size: int, dim: int, n_mlp: int, ch: dict[int, int]) -> dict[str, tuple]:
    """Key -> shape of rosinality's g_ema, written from the key list in the spec (not from our module)."""
    keys: dict[str, tuple] = {}
    for i in range(1, n_mlp + 1):
        keys[f"style.{i}.weight"] = (dim, dim)
        keys[f"style.{i}.bias"] = (dim,)
    c4 = ch[4]
    keys["input.input"] = (1, c4, 4, 4)
    keys.update({
        "conv1.conv.weight": (1, c4, c4, 3, 3), "conv1.conv.modulation.weight": (c4, dim),
        "conv1.conv.modulation.bias": (c4,), "conv1.noise.weight": (1,), "conv1.activate.bias": (c4,),
        "to_rgb1.bias": (1, 3, 1, 1), "to_rgb1.conv.weight": (1, 3, c4, 1, 1),
        "to_rgb1.conv.modulation.weight": (c4, dim), "to_rgb1.conv.modulation.bias": (c4,),
    })  # fmt: skip
    n_blocks = int(math.log2(size)) - 2
    for k in range(n_blocks):
        cin, cout = ch[2 ** (k + 2)], ch[2 ** (k + 3)]
        for j, (a, b) in enumerate(((cin, cout), (cout, cout))):
            p = f"convs.{2 * k + j}"
            keys[f"{p}.conv.weight"] = (1, b, a, 3, 3)
            if j == 0:
                keys[f"{p}.conv.blur.kernel"] = (4, 4)
            keys[f"{p}.conv.modulation.weight"] = (a, dim)
            keys[f"{p}.conv.modulation.bias"] = (a,)
            keys[f"{p}.noise.weight"] = (1,)
            keys[f"{p}.activate.bias"] = (b,)
        keys[f"to_rgbs.{k}.bias"] = (1, 3, 1, 1)
        keys[f"to_rgbs.{k}.upsample.kernel"] = (4, 4)
        keys[f"to_rgbs.{k}.conv.weight"] = (1, 3, cout, 1, 1)
        keys[f"to_rgbs.{k}.conv.modulation.weight"] = (cout, dim)
        keys[f"to_rgbs.{k}.conv.modulation.bias"] = (cout,)
    res = [4] + [2 ** (k + 3) for k in range(n_blocks) for _ in range(2)]
    for i, r in enumerate(res):
        keys[f"noises.noise_{i}"] = (1, 1, r, r)
    return keys


@pytest.mark.parametrize("size,cm,n_keys", [(1024, 2, 171), (256, 1, None)])
def test_full_size_keys_and_shapes_match_rosinality(size, cm, n_keys):
    with torch.device("meta"):
        g = Generator(size, channel_multiplier=cm)
    ours = {k: tuple(v.shape) for k, v in g.state_dict().items()}
    expected = rosinality_key_shapes(size, 512, 8, spec_channels(size, cm))
    assert set(ours) == set(expected)
    assert ours == expected
    if n_keys:
        assert len(ours) == n_keys
    cfg = infer_generator_config(g.state_dict())
    assert cfg == dict(size=size, style_dim=512, n_mlp=8, channel_multiplier=cm, channel_max=512)


def random_rosinality_sd(size=32, dim=16, n_mlp=2, cap=16, seed=0):
    torch.manual_seed(seed)
    sd = {k: torch.randn(s) for k, s in rosinality_key_shapes(size, dim, n_mlp, spec_channels(size, 2, cap)).items()}
    for k in sd:
        if k.endswith("kernel"):
            sd[k] = torch.tensor([1.0, 3, 3, 1]).outer(torch.tensor([1.0, 3, 3, 1])) / 64 * 4
    return sd


def test_load_rosinality_convert_weight_file(tmp_path):
    sd = random_rosinality_sd()
    avg = torch.randn(16)
    path = tmp_path / "g.pt"
    torch.save({"g_ema": sd, "latent_avg": avg}, path)
    g = load_generator(path)
    assert (g.size, g.style_dim, g.n_mlp) == (32, 16, 2) and not g.training
    for k, v in g.state_dict().items():
        assert torch.equal(v, sd[k]), k
    assert torch.equal(g.latent_avg, avg[None])
    assert g.synthesis(torch.randn(1, 16)).shape == (1, 3, 32, 32)


def test_load_training_file_with_namespace_via_allow_list(tmp_path):
    sd = random_rosinality_sd(seed=1)
    args = argparse.Namespace(size=32, latent=16, n_mlp=2, channel_multiplier=2, path="/data/ffhq", r1=10.0)
    path = tmp_path / "train.pt"
    torch.save({"g": random_rosinality_sd(seed=2), "d": {}, "g_ema": sd, "g_optim": {}, "args": args,
                "ada_aug_p": 0.1}, path)  # fmt: skip
    # plain weights_only refuses the Namespace; our loader allows exactly that class
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    g = load_generator(path)
    assert torch.equal(g.state_dict()["style.1.weight"], sd["style.1.weight"])
    assert g.latent_avg is None
    g_raw = load_generator(path, key="g")
    assert not torch.equal(g_raw.state_dict()["style.1.weight"], sd["style.1.weight"])


def test_other_classes_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"g_ema": random_rosinality_sd(), "x": argparse.ArgumentParser}, path)
    with pytest.raises(CheckpointError, match="evil.pt.*weights_only"):
        load_generator(path)


def test_renamed_and_reshaped_keys_are_named(tmp_path):
    sd = random_rosinality_sd()
    renamed = dict(sd)
    renamed["convs.1.conv.weightx"] = renamed.pop("convs.1.conv.weight")
    torch.save({"g_ema": renamed}, tmp_path / "renamed.pt")
    with pytest.raises(
        CheckpointError, match=r"renamed.pt.*missing keys: \['convs.1.conv.weight'\].*convs.1.conv.weightx"
    ):
        load_generator(tmp_path / "renamed.pt")
    reshaped = dict(sd)
    reshaped["to_rgbs.1.conv.modulation.bias"] = torch.randn(17)
    torch.save({"g_ema": reshaped}, tmp_path / "reshaped.pt")
    with pytest.raises(CheckpointError, match=r"reshaped.pt.*to_rgbs.1.conv.modulation.bias: file \(17,\)"):
        load_generator(tmp_path / "reshaped.pt")


def test_truncated_and_missing_files(tmp_path):
    path = tmp_path / "g.pt"
    torch.save({"g_ema": random_rosinality_sd()}, path)
    data = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.pt"):
        load_generator(tmp_path / "cut.pt")
    with pytest.raises(CheckpointError, match="nope.pt: no such file"):
        load_generator(tmp_path / "nope.pt")
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="other.pt: no generator found"):
        load_generator(tmp_path / "other.pt")


def test_generator_from_psp_checkpoint_decoder_keys(tmp_path):
    sd = random_rosinality_sd()
    torch.save({"state_dict": {f"decoder.{k}": v for k, v in sd.items()} | {"encoder.x": torch.zeros(1)},
                "latent_avg": torch.randn(8, 16)}, tmp_path / "e4e.pt")  # fmt: skip
    g = load_generator(tmp_path / "e4e.pt")
    assert torch.equal(g.state_dict()["input.input"], sd["input.input"])
    assert g.latent_avg.shape == (1, 16)


# ------------------------------------------------------------------------------------------- NVIDIA


def nvidia_sd(size=32, dim=16, n_fc=2, cap=16, seed=0) -> dict[str, torch.Tensor]:
    """A synthetic NVIDIA stylegan2-ada ``G_ema.state_dict()`` (names and shapes from networks.py)."""
    torch.manual_seed(seed)
    ch = spec_channels(size, 2, cap)
    f = torch.tensor([1.0, 3, 3, 1]).outer(torch.tensor([1.0, 3, 3, 1])) / 64
    sd = {}
    for i in range(n_fc):
        sd[f"mapping.fc{i}.weight"] = torch.randn(dim, dim) * 100
        sd[f"mapping.fc{i}.bias"] = torch.randn(dim)
    sd["mapping.w_avg"] = torch.randn(dim)
    for r in range(2, int(math.log2(size)) + 1):
        res = 2**r
        b = f"synthesis.b{res}"
        sd[f"{b}.resample_filter"] = f.clone()
        if res == 4:
            sd[f"{b}.const"] = torch.randn(ch[4], 4, 4)
        layers = ["conv1"] if res == 4 else ["conv0", "conv1"]
        for name in layers:
            cin = ch[res // 2] if name == "conv0" else ch[res]
            p = f"{b}.{name}"
            sd[f"{p}.resample_filter"] = f.clone()
            sd[f"{p}.affine.weight"] = torch.randn(cin, dim)
            sd[f"{p}.affine.bias"] = torch.randn(cin) + 1
            sd[f"{p}.weight"] = torch.randn(ch[res], cin, 3, 3)
            sd[f"{p}.noise_const"] = torch.randn(res, res)
            sd[f"{p}.noise_strength"] = torch.randn(())
            sd[f"{p}.bias"] = torch.randn(ch[res])
        sd[f"{b}.torgb.affine.weight"] = torch.randn(ch[res], dim)
        sd[f"{b}.torgb.affine.bias"] = torch.randn(ch[res]) + 1
        sd[f"{b}.torgb.weight"] = torch.randn(3, ch[res], 1, 1)
        sd[f"{b}.torgb.bias"] = torch.randn(3)
    return sd


def test_nvidia_round_trip_and_semantics():
    nv = nvidia_sd()
    ours, w_avg = convert_nvidia_state_dict(nv)
    assert torch.equal(w_avg, nv["mapping.w_avg"])
    g = Generator(32, style_dim=16, n_mlp=2, channel_max=16)
    g.load_state_dict(ours, strict=True)
    back = to_nvidia_state_dict(ours, latent_avg=w_avg)
    assert set(back) == set(nv)
    for k in nv:
        assert torch.equal(back[k], nv[k]), k
    # Placement spot checks against the mapping table of the spec
    assert torch.equal(ours["convs.2.conv.weight"][0], nv["synthesis.b16.conv0.weight"])
    assert torch.equal(ours["noises.noise_4"][0, 0], nv["synthesis.b16.conv1.noise_const"])
    assert torch.equal(ours["to_rgbs.1.bias"].flatten(), nv["synthesis.b16.torgb.bias"])
    assert torch.equal(ours["to_rgbs.1.upsample.kernel"], nv["synthesis.b16.resample_filter"] * 4)
    # The mapping network computes NVIDIA's formula: normalize_2nd_moment, fc with gain lr/sqrt(in), lrelu*sqrt2
    z = torch.randn(4, 16)
    x = z * (z.square().mean(1, keepdim=True) + 1e-8).rsqrt()
    for i in range(2):
        w, b = nv[f"mapping.fc{i}.weight"], nv[f"mapping.fc{i}.bias"]
        x = F.leaky_relu(x @ (w * 0.01 / 4).t() + b * 0.01, 0.2) * math.sqrt(2)
    torch.testing.assert_close(g.mapping(z), x)


def test_nvidia_unknown_keys_are_refused():
    nv = nvidia_sd()
    nv["mapping.embed.weight"] = torch.randn(16, 10)
    with pytest.raises(CheckpointError, match=r"mapping.embed.weight"):
        convert_nvidia_state_dict(nv)
    sg3 = {"synthesis.input.affine.weight": torch.randn(4, 16), "mapping.fc0.weight": torch.randn(16, 16)}
    with pytest.raises(CheckpointError, match="StyleGAN3"):
        convert_nvidia_state_dict(sg3)
    nv = nvidia_sd()
    del nv["synthesis.b8.conv1.noise_const"]
    with pytest.raises(CheckpointError, match="synthesis.b8.conv1.noise_const"):
        convert_nvidia_state_dict(nv)


def test_nvidia_files(tmp_path):
    nv = nvidia_sd()
    # plain NVIDIA state dict saved with torch.save loads through load_generator
    torch.save({f"G_ema.{k}": v for k, v in nv.items()}, tmp_path / "nv.pt")
    g = load_generator(tmp_path / "nv.pt")
    assert torch.equal(g.latent_avg[0], nv["mapping.w_avg"])
    # .pkl only behind the explicit flag, with a warning
    with open(tmp_path / "net.pkl", "wb") as f:
        pickle.dump({"G_ema": nv}, f)
    with pytest.raises(CheckpointError, match="net.pkl.*allow_unsafe_pickle=True"):
        load_generator(tmp_path / "net.pkl")
    with pytest.warns(UserWarning, match="executes code"):
        g2 = load_generator(tmp_path / "net.pkl", allow_unsafe_pickle=True)
    assert torch.equal(g2.state_dict()["conv1.conv.weight"], g.state_dict()["conv1.conv.weight"])
    with pytest.raises(CheckpointError, match="allow_unsafe_pickle"):
        load_nvidia_pkl(tmp_path / "net.pkl")
