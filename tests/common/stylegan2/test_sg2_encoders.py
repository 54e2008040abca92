"""e4e / pSp encoders: output shapes, e4e's w0 + deltas structure, official checkpoint formats built in the test."""

from __future__ import annotations

import math

import pytest
import torch

from common.stylegan2 import CheckpointError, Encoder4Editing, GradualStyleEncoder, load_e4e, load_psp

D = 32  # style width of the tiny test encoders (released models: 512)


def bn(prefix: str, c: int) -> dict[str, tuple]:
    return {f"{prefix}.{n}": (c,) for n in ("weight", "bias", "running_mean", "running_var")} | {
        f"{prefix}.num_batches_tracked": ()
    }


def official_encoder_keys(n_styles: int, dim: int = 512) -> dict[str, tuple]:
    """Key -> shape of pSp/e4e's encoder (IR-SE-50), written from the official layout in the spec."""
    keys = {"input_layer.0.weight": (64, 3, 3, 3), **bn("input_layer.1", 64), "input_layer.2.weight": (64,)}
    units = []
    for cin, depth, n in ((64, 64, 3), (64, 128, 4), (128, 256, 14), (256, 512, 3)):
        units += [(cin, depth)] + [(depth, depth)] * (n - 1)
    for i, (cin, depth) in enumerate(units):
        p = f"body.{i}"
        if cin != depth:
            keys[f"{p}.shortcut_layer.0.weight"] = (depth, cin, 1, 1)
            keys.update(bn(f"{p}.shortcut_layer.1", depth))
        keys.update(bn(f"{p}.res_layer.0", cin))
        keys[f"{p}.res_layer.1.weight"] = (depth, cin, 3, 3)
        keys[f"{p}.res_layer.2.weight"] = (depth,)
        keys[f"{p}.res_layer.3.weight"] = (depth, depth, 3, 3)
        keys.update(bn(f"{p}.res_layer.4", depth))
        keys[f"{p}.res_layer.5.fc1.weight"] = (depth // 16, depth, 1, 1)
        keys[f"{p}.res_layer.5.fc2.weight"] = (depth, depth // 16, 1, 1)
    for i in range(n_styles):
        spatial = 16 if i < 3 else 32 if i < 7 else 64
        for j in range(int(math.log2(spatial))):
            keys[f"styles.{i}.convs.{2 * j}.weight"] = (dim, 512 if j == 0 else dim, 3, 3)
            keys[f"styles.{i}.convs.{2 * j}.bias"] = (dim,)
        keys[f"styles.{i}.linear.weight"] = (dim, dim)
        keys[f"styles.{i}.linear.bias"] = (dim,)
    keys.update({"latlayer1.weight": (512, 256, 1, 1), "latlayer1.bias": (512,)})
    keys.update({"latlayer2.weight": (512, 128, 1, 1), "latlayer2.bias": (512,)})
    return keys


def random_sd(keys: dict[str, tuple], seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, shape in keys.items():
        if k.endswith("num_batches_tracked"):
            sd[k] = torch.tensor(7)
        elif k.endswith("running_var"):
            sd[k] = torch.rand(shape, generator=g) + 0.5
        else:
            sd[k] = torch.randn(shape, generator=g) * 0.1
    return sd


@pytest.mark.parametrize("size,n_styles", [(1024, 18), (256, 14)])
def test_full_size_keys_match_official(size, n_styles):
    with torch.device("meta"):
        e4e = Encoder4Editing(50, "ir_se", stylegan_size=size)
        psp = GradualStyleEncoder(50, "ir_se", stylegan_size=size)
    expected = official_encoder_keys(n_styles)
    for enc in (e4e, psp):
        assert enc.n_styles == n_styles
        assert {k: tuple(v.shape) for k, v in enc.state_dict().items()} == expected


@pytest.fixture(scope="module")
def official_sd() -> dict[str, torch.Tensor]:
    return random_sd(official_encoder_keys(8, D))


@pytest.fixture(scope="module")
def e4e_ref(official_sd) -> Encoder4Editing:
    enc = Encoder4Editing(stylegan_size=32, style_dim=D).eval()
    enc.load_state_dict(official_sd)
    return enc


# 32 px inputs keep the IR-SE-50 forward cheap; the style blocks still reduce every level to 1x1.
X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def test_outputs_and_pyramid(official_sd, e4e_ref):
    x, e4e = X, e4e_ref
    psp = GradualStyleEncoder(stylegan_size=32, style_dim=D).eval()
    psp.load_state_dict(official_sd)
    with torch.no_grad():
        c1, c2, c3 = e4e.pyramid(x)
        assert c1.shape == (2, 128, 8, 8) and c2.shape == (2, 256, 4, 4) and c3.shape == (2, 512, 2, 2)
        w_e4e, w_psp = e4e(x), psp(x)
        assert w_e4e.shape == w_psp.shape == (2, 8, D)
        # pSp: each row from its own block; e4e: row 0 = w0, row i = w0 + the same block's output
        assert torch.allclose(w_e4e[:, 0], w_psp[:, 0])
        torch.testing.assert_close(w_e4e[:, 1:] - w_e4e[:, :1], w_psp[:, 1:], atol=1e-5, rtol=1e-4)
        e4e.progressive_stage = 0  # WTraining: every row is w0
        w0 = e4e(x)
        assert torch.equal(w0, w0[:, :1].expand_as(w0))
        e4e.progressive_stage = 3
        w3 = e4e(x)
        assert torch.equal(w3[:, :4], w_e4e[:, :4]) and torch.equal(w3[:, 4:], w0[:, 4:])
        e4e.progressive_stage = e4e.n_styles - 1


def test_load_e4e_ffhq_format(tmp_path, official_sd, e4e_ref):
    avg = torch.randn(8, D)
    ckpt = {
        "state_dict": {f"encoder.{k}": v for k, v in official_sd.items()} | {"decoder.style.1.weight": torch.ones(1)},
        "opts": {"encoder_type": "Encoder4Editing", "stylegan_size": 32, "start_from_latent_avg": True},
        "latent_avg": avg,
    }
    torch.save(ckpt, tmp_path / "e4e_ffhq_encode.pt")
    enc = load_e4e(tmp_path / "e4e_ffhq_encode.pt")
    assert isinstance(enc, Encoder4Editing) and enc.n_styles == 8 and not enc.training
    ref, x = e4e_ref, X[:1]
    with torch.no_grad():
        torch.testing.assert_close(enc(x), ref(x) + avg)
        enc.add_latent_avg = False
        torch.testing.assert_close(enc(x), ref(x))
    with pytest.raises(CheckpointError, match="encoder_type is 'Encoder4Editing'"):
        load_psp(tmp_path / "e4e_ffhq_encode.pt")


def test_load_hyperreenact_format_adds_no_latent_avg(tmp_path, official_sd, e4e_ref):
    torch.save({"e": official_sd}, tmp_path / "e4e-voxceleb.pt")
    enc = load_e4e(tmp_path / "e4e-voxceleb.pt")
    assert enc.latent_avg is None and not enc.add_latent_avg
    with torch.no_grad():
        assert torch.equal(enc(X[:1]), e4e_ref(X[:1]))


def test_load_psp_format_and_errors(tmp_path, official_sd):
    sd = {k: v for k, v in official_sd.items() if not k.endswith("num_batches_tracked")}  # pre-0.4.1 style file
    torch.save({"state_dict": {f"encoder.{k}": v for k, v in sd.items()}, "opts": {"encoder_type":
                "GradualStyleEncoder", "start_from_latent_avg": False}}, tmp_path / "psp.pt")  # fmt: skip
    enc = load_psp(tmp_path / "psp.pt")
    assert isinstance(enc, GradualStyleEncoder) and not enc.add_latent_avg
    bad = dict(official_sd)
    bad["styles.3.linear.weightx"] = bad.pop("styles.3.linear.weight")
    torch.save({"e": bad}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"bad.pt.*missing keys: \['styles.3.linear.weight'\]"):
        load_e4e(tmp_path / "bad.pt")
    torch.save({"e": official_sd}, tmp_path / "noavg.pt")
    with pytest.raises(CheckpointError, match="noavg.pt.*no 'latent_avg'"):
        load_e4e(tmp_path / "noavg.pt", add_latent_avg=True)
