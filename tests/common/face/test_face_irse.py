"""Tests of common/face/irse.py: official key names and shapes, forward shapes."""

from __future__ import annotations

import pytest
import torch

from common.face.irse import Backbone, BottleneckIR, BottleneckIRSE, get_blocks


def _expected_official_keys() -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes of model_ir_se50.pth, written out independently of the implementation."""
    keys: dict[str, tuple[int, ...]] = {"input_layer.0.weight": (64, 3, 3, 3)}
    for n in ("weight", "bias", "running_mean", "running_var"):
        keys[f"input_layer.1.{n}"] = (64,)
    keys["input_layer.2.weight"] = (64,)
    stages = [(64, 64, 3), (64, 128, 4), (128, 256, 14), (256, 512, 3)]
    i = 0
    for cin, d, units in stages:
        for u in range(units):
            c_in = cin if u == 0 else d
            p = f"body.{i}."
            if c_in != d:
                keys[p + "shortcut_layer.0.weight"] = (d, c_in, 1, 1)
                for n in ("weight", "bias", "running_mean", "running_var"):
                    keys[p + f"shortcut_layer.1.{n}"] = (d,)
            for n in ("weight", "bias", "running_mean", "running_var"):
                keys[p + f"res_layer.0.{n}"] = (c_in,)
                keys[p + f"res_layer.4.{n}"] = (d,)
            keys[p + "res_layer.1.weight"] = (d, c_in, 3, 3)
            keys[p + "res_layer.2.weight"] = (d,)
            keys[p + "res_layer.3.weight"] = (d, d, 3, 3)
            keys[p + "res_layer.5.fc1.weight"] = (d // 16, d, 1, 1)
            keys[p + "res_layer.5.fc2.weight"] = (d, d // 16, 1, 1)
            i += 1
    for n in ("weight", "bias", "running_mean", "running_var"):
        keys[f"output_layer.0.{n}"] = (512,)
        keys[f"output_layer.4.{n}"] = (512,)
    keys["output_layer.3.weight"] = (512, 512 * 7 * 7)
    keys["output_layer.3.bias"] = (512,)
    return keys


def test_state_dict_matches_official_layout():
    sd = Backbone(112, 50, 0.6, "ir_se").state_dict()
    sd = {k: tuple(v.shape) for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    assert sd == _expected_official_keys()


def test_blocks_and_units():
    assert [len(s) for s in get_blocks(50)] == [3, 4, 14, 3]
    assert [len(s) for s in get_blocks(100)] == [3, 13, 30, 3]
    with pytest.raises(ValueError, match="num_layers"):
        get_blocks(34)
    assert isinstance(Backbone(mode="ir").body[0], BottleneckIR)
    assert isinstance(Backbone().body[0], BottleneckIRSE)


def test_forward_and_features_shapes():
    torch.manual_seed(0)
    net = Backbone().eval()
    x = torch.randn(1, 3, 112, 112)
    feats = net.features(x)
    assert feats.shape == (1, 512, 7, 7)
    emb = torch.nn.functional.normalize(net.output_layer(feats), dim=1)
    assert emb.shape == (1, 512) and torch.allclose(emb.norm(dim=1), torch.ones(1), atol=1e-5)
    with pytest.raises(ValueError, match="112x112"):
        net(torch.randn(1, 3, 128, 128))
