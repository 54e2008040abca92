"""Reenactment module and hypernetwork: layer table, offset shapes, combination modes, released-format loading."""

from __future__ import annotations

import pytest
import torch

from projects.hyperreenact.hypernet import (
    VOXCELEB_256_CONV_SHAPES,
    HypernetworkBlocks,
    HyperRefinementBlock,
    LayerShape,
    ReenactmentModule,
    RefinementBlock,
    SharedWeightsHypernet,
    deltas_for_generator,
    load_released_hypernet,
    official_layer_table,
    released_hypernet_shapes,
    torgb_indices,
)


def test_official_layer_table_matches_the_official_parameters_table():
    table = official_layer_table(VOXCELEB_256_CONV_SHAPES)
    assert len(table) == 20
    assert [i for i, s in enumerate(table) if s is None] == [1, 4, 7, 10, 13, 16, 19] == torgb_indices(20)
    tuned = [i for i, s in enumerate(table) if s is not None]
    assert tuned == [0, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18]
    # PARAMETERS_256_voxceleb stores [kernel, in, out]
    assert table[0] == LayerShape(3, 512, 512)
    assert table[11] == LayerShape(3, 512, 256) and table[12] == LayerShape(3, 256, 256)
    assert table[14] == LayerShape(3, 256, 128) and table[15] == LayerShape(3, 128, 128)
    assert table[17] == LayerShape(3, 128, 64) and table[18] == LayerShape(3, 64, 64)


def test_deltas_for_generator_drops_torgb_entries():
    deltas = [None if i in (1, 4, 7, 10, 13, 16, 19) else torch.full((1,), float(i)) for i in range(20)]
    out = deltas_for_generator(deltas)
    assert len(out) == 13
    assert [int(d.item()) for d in out] == [0, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18]


def _tiny_table():
    # a 32 px generator with channels 32 at 4-16 px and 16 at 32 px: 7 convs, 11 official entries
    convs = [(32, 32, 3, 3)] * 5 + [(16, 32, 3, 3), (16, 16, 3, 3)]
    return official_layer_table(convs)


def _tiny_hypernet(combine="matmul"):
    return HypernetworkBlocks(
        _tiny_table(),
        pose_channels=24,
        feature_channels=8,
        shared_channels=32,
        shared_inner=4,
        refine_inner=6,
        head_channels=10,
        z_dim=5,
        combine=combine,
    )


def test_offset_shapes_per_layer_and_none_for_torgb():
    torch.manual_seed(0)
    net = _tiny_hypernet()
    deltas = net(torch.randn(2, 24, 7, 7), torch.randn(2, 8, 7, 7))
    table = _tiny_table()
    assert len(deltas) == len(table) == 11
    for d, s in zip(deltas, table):
        if s is None:
            assert d is None
        else:
            assert d.shape == (2, s.out_channels, s.in_channels, s.kernel, s.kernel)
            # per (out, in) channel pair, shared over the kernel
            assert torch.equal(d[..., 0, 0], d[..., 2, 1])
    shared = [i for i, b in enumerate(net.refinement_blocks) if isinstance(b, HyperRefinementBlock)]
    assert shared == [0, 2, 3, 5, 6]
    assert all(net.refinement_blocks[i].hypernet is net.shared_weight_hypernet for i in shared)
    assert isinstance(net.refinement_blocks[8], RefinementBlock)


def test_heads_need_7x7_maps():
    net = _tiny_hypernet()
    with pytest.raises(ValueError, match="7x7"):
        net(torch.randn(1, 24, 9, 9), torch.randn(1, 8, 9, 9))


def test_reenactment_module_matmul_and_elementwise_by_hand():
    torch.manual_seed(0)
    rm = ReenactmentModule(3, combine="matmul")
    fp, fa = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    gp, bp = rm.spade_pose(fp)
    ga, ba = rm.spade_app(fa)
    expected = torch.zeros_like(fp)
    for b in range(2):
        for c in range(3):
            expected[b, c] = gp[b, c] @ fp[b, c] + ga[b, c] @ fa[b, c] + bp[b, c] + ba[b, c]
    torch.testing.assert_close(rm(fp, fa), expected)
    rm.combine = "elementwise"
    torch.testing.assert_close(rm(fp, fa), gp * fp + ga * fa + bp + ba)
    assert not torch.allclose(expected, gp * fp + ga * fa + bp + ba)
    with pytest.raises(ValueError):
        ReenactmentModule(3, combine="sum")


def test_shared_hypernet_formula():
    torch.manual_seed(0)
    hn = SharedWeightsHypernet(z_dim=3, in_size=4, out_size=4, kernel_size=3)
    z = torch.randn(2, 3)
    out = hn(z)
    assert out.shape == (2, 4, 4, 3, 3)
    h = (z @ hn.w2 + hn.b2).reshape(2, 4, 3)
    final = h @ hn.w1 + hn.b1  # [B, in, out], read in memory order as [B, out, in]
    torch.testing.assert_close(out[:, :, :, 1, 2], final.reshape(2, 4, 4))


def _cheap_random(shape, seed):
    # Full-size "random" tensors without the memory: a small random vector strided over the first dimension.
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(shape[0], generator=g)
    return base.as_strided(shape, (1,) + (0,) * (len(shape) - 1))


def test_released_format_state_dict_loads_strictly_at_full_size():
    shapes = released_hypernet_shapes()
    # 7 shared heads (each repeating the shared hypernet's 4 keys), 6 per-layer heads
    assert len(shapes) == 2 + 8 + 4 + 7 * (8 + 2 + 4) + 6 * (8 + 2)
    state = {f"hypernet.{k}": _cheap_random(s, i) for i, (k, s) in enumerate(shapes.items())}
    wrapped = {"state_dict": state}
    with torch.device("meta"):
        net = HypernetworkBlocks(official_layer_table(VOXCELEB_256_CONV_SHAPES))
    # the module's own keys and shapes equal the table computed from the official definitions
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == shapes
    n_params = sum(p.numel() for p in net.parameters())
    assert abs(n_params / 1e6 - 302.6) < 0.1  # the spec's count from the official definitions
    from projects.hyperreenact.hypernet import extract_hypernet_state

    sd = extract_hypernet_state(wrapped)
    net.load_state_dict(sd, strict=True, assign=True)
    assert net.conv_transf.weight.shape == (512, 2048, 1, 1)
    assert torch.equal(net.refinement_blocks[11].output.bias, sd["refinement_blocks.11.output.bias"])


def test_released_file_round_trip_and_errors(tmp_path):
    torch.manual_seed(0)
    src = _tiny_hypernet()
    path = tmp_path / "hypernetwork.pt"
    torch.save({"state_dict": {f"hypernet.{k}": v for k, v in src.state_dict().items()}}, path)
    dst = _tiny_hypernet()
    load_released_hypernet(dst, path)
    f_pose, f_app = torch.randn(1, 24, 7, 7), torch.randn(1, 8, 7, 7)
    for a, b in zip(src(f_pose, f_app), dst(f_pose, f_app)):
        assert (a is None and b is None) or torch.equal(a, b)
    bad = tmp_path / "bad.pt"
    torch.save({"decoder.x": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="no 'hypernet"):
        load_released_hypernet(dst, bad)
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"trunc\.pt: truncated"):
        load_released_hypernet(dst, trunc)
    missing_key = {f"hypernet.{k}": v for k, v in src.state_dict().items() if "conv_transf" not in k}
    torch.save(missing_key, bad)
    with pytest.raises(ValueError, match="does not match"):
        load_released_hypernet(dst, bad)
