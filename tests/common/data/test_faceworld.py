"""The face world renderer: determinism, sizes, the 68-point layout, geometry consistency, the dataset splits."""

from __future__ import annotations

import pytest
import torch

from common.data import faceworld as fw
from common.face.flame import axis_angle_to_euler, rotation_matrix_to_axis_angle
from common.face.losses import EYE_PAIRS, MOUTH_PAIRS


def params(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return fw.identity_params(range(n)), fw.sample_pose(n, g), fw.sample_expression(n, g)


def test_render_is_deterministic_and_batch_independent():
    ident, pose, expr = params(6)
    a = fw.render(ident, pose, expr, 32)
    b = fw.render(ident, pose, expr, 32)
    assert torch.equal(a, b)
    # an image does not depend on what else is in the batch
    c = fw.render(ident[2:4], pose[2:4], expr[2:4], 32)
    torch.testing.assert_close(c, a[2:4], atol=1e-5, rtol=0)
    assert a.shape == (6, 3, 32, 32) and a.min() >= -1 and a.max() <= 1


@pytest.mark.parametrize("size", [8, 32, 64, 256])
def test_any_size(size):
    ident, pose, expr = params(2)
    img = fw.render(ident, pose, expr, size)
    assert img.shape == (2, 3, size, size)
    assert torch.isfinite(img).all()


def test_sizes_agree_after_downsampling():
    """The same face at 128 px pooled to 32 px is close to its 32 px render (one scene, any resolution)."""
    ident, pose, expr = params(3, seed=4)
    big = torch.nn.functional.avg_pool2d(fw.render(ident, pose, expr, 128), 4)
    small = fw.render(ident, pose, expr, 32)
    assert (big - small).abs().mean() < 0.03


def test_bad_parameters_fail_clearly():
    ident, pose, expr = params(2)
    with pytest.raises(ValueError, match="pose must be a tensor"):
        fw.render(ident, pose[:, :2], expr)
    with pytest.raises(ValueError, match="batch sizes differ"):
        fw.render(ident, pose[:1], expr)
    with pytest.raises(ValueError, match="size"):
        fw.render(ident, pose, expr, 4)


def test_identity_params_deterministic_distinct_and_in_range():
    a = fw.identity_params([0, 1, 2, 99_999])
    assert torch.equal(a, fw.identity_params([0, 1, 2, 99_999]))
    assert a.shape == (4, fw.IDENTITY_DIM) and a.min() >= 0 and a.max() <= 1
    assert torch.cdist(a, a).add(torch.eye(4) * 10).min() > 0.5  # no two identities alike
    assert not torch.equal(fw.identity_params([3], seed=1), fw.identity_params([3], seed=0))
    many = fw.identity_params(range(5000))
    # each parameter covers its range roughly uniformly
    assert (many.mean(0) - 0.5).abs().max() < 0.03
    assert ((many.std(0) - (1 / 12) ** 0.5).abs() < 0.02).all()


def test_splits_are_disjoint():
    ranges = list(fw.SPLITS.values())
    for i, r in enumerate(ranges):
        for s in ranges[i + 1 :]:
            assert not set(r) & set(s)
    ds = fw.FaceWorldDataset("test", size=16, length=5)
    assert all(int(ds[i]["identity_index"]) in fw.SPLITS["test"] for i in range(5))


def test_dataset_items_are_deterministic_and_consistent():
    ds = fw.FaceWorldDataset("val", size=32, length=8, seed=3, n_identities=4)
    a, b = ds[5], fw.FaceWorldDataset("val", size=32, length=8, seed=3, n_identities=4)[5]
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert int(a["identity_index"]) == fw.SPLITS["val"].start + 1  # item 5 of 4 identities
    expected = fw.render(a["identity"][None], a["pose"][None], a["expression"][None], 32)[0]
    assert torch.equal(a["image"], expected)
    assert a["landmarks"].shape == (68, 2)
    assert not torch.equal(ds[1]["pose"], ds[2]["pose"])
    with pytest.raises(IndexError):
        ds[8]
    with pytest.raises(ValueError, match="split"):
        fw.FaceWorldDataset("dev")


def test_landmark_layout_frontal_neutral():
    ident = fw.identity_params(range(4))
    lm = fw.landmarks(ident, torch.zeros(4, 3), torch.zeros(4, 8), 64)
    x, y = lm[..., 0], lm[..., 1]
    # image-left eye (36-41) left of the image-right eye (42-47), brows above eyes, eyes above the nose tip,
    # nose above the mouth, the chin (8) lowest of all
    assert (x[:, 36:42].mean(1) < x[:, 42:48].mean(1)).all()
    assert (y[:, 17:27].mean(1) < y[:, 36:48].mean(1)).all()
    assert (y[:, 36:48].mean(1) < y[:, 30]).all() and (y[:, 30] < y[:, 51]).all()
    assert (y[:, 8] == y.max(1).values).all()
    # symmetric about the face's vertical axis at frontal pose: jaw 0 mirrors jaw 16
    torch.testing.assert_close(x[:, 0] + x[:, 16], torch.full((4,), 64.0), atol=1e-3, rtol=0)
    # upper lids above lower lids, upper lip above lower lip
    for up, low in EYE_PAIRS[1:3] + EYE_PAIRS[4:]:
        assert (y[:, up] < y[:, low]).all()
    for up, low in MOUTH_PAIRS[1:6]:
        assert (y[:, up] < y[:, low]).all()
    # the nose tip is on the face: its colour is not the background's
    img = fw.render(ident, torch.zeros(4, 3), torch.zeros(4, 8), 64)
    tip = lm[:, 30].round().long()
    corner = img[:, :, 1, 1]
    for b in range(4):
        assert (img[b, :, tip[b, 1], tip[b, 0]] - corner[b]).abs().max() > 0.05


def test_expressions_move_the_right_landmarks():
    ident = fw.identity_params([7, 7])
    pose = torch.zeros(2, 3)
    names = fw.EXPRESSION_NAMES

    def lm_with(name: str, value: float):
        e = torch.zeros(2, 8)
        e[1, names.index(name)] = value
        return fw.landmarks(ident, pose, e, 64)

    lm = lm_with("mouth_open", 1.0)
    gap = lambda l: l[:, 66, 1] - l[:, 62, 1]  # noqa: E731
    assert gap(lm)[1] > gap(lm)[0] + 3  # pixels
    lm = lm_with("eye_open", -1.0)
    opening = lambda l: l[:, 41, 1] - l[:, 37, 1]  # noqa: E731
    assert opening(lm)[1] < 0.15 * opening(lm)[0]
    lm = lm_with("smile", 1.0)
    width = lambda l: l[:, 54, 0] - l[:, 48, 0]  # noqa: E731
    assert width(lm)[1] > width(lm)[0] and lm[1, 48, 1] < lm[0, 48, 1]  # wider, corners up
    lm = lm_with("brow_raise", 1.0)
    assert (lm[1, 17:27, 1] < lm[0, 17:27, 1]).all()


def test_pose_rotates_the_landmarks_rigidly():
    ident = fw.identity_params([1, 1])
    expr = torch.zeros(2, 8)
    pose = torch.tensor([[0.0, 0, 0], [25.0, -10.0, 8.0]])
    pts = fw.landmarks3d_model(ident, pose, expr, with_grid=True)
    R = fw.rotation(pose[1:])
    torch.testing.assert_close(pts[1], pts[0] @ R[0].T, atol=1e-5, rtol=0)
    # the rotation is the DECA/FLAME convention: axis-angle round-trips to the same Euler angles
    torch.testing.assert_close(axis_angle_to_euler(rotation_matrix_to_axis_angle(R)), pose[1:], atol=1e-3, rtol=0)
    # positive yaw turns the nose toward image left
    lm = fw.landmarks(ident, pose[[0, 0]] + torch.tensor([[0.0, 0, 0], [30, 0, 0]]), expr, 64)
    assert lm[1, 30, 0] < lm[0, 30, 0] - 2


def test_cross_pair_ground_truth_is_a_render():
    """render(identity of A, pose and expression of B) keeps A's appearance and takes B's landmarks' motion."""
    ds = fw.FaceWorldDataset("test", size=32, length=4, n_identities=4)
    a, b = ds[0], ds[1]
    gt = fw.render(a["identity"][None], b["pose"][None], b["expression"][None], 32)[0]
    assert not torch.equal(gt, a["image"]) and not torch.equal(gt, b["image"])
    lm_gt = fw.landmarks(a["identity"][None], b["pose"][None], b["expression"][None], 32)[0]
    # same identity and motion -> same image; the landmarks move with the pose, not with the identity
    assert (lm_gt - b["landmarks"]).abs().mean() < (lm_gt - a["landmarks"]).abs().mean()
    # background and hair colour are the identity's (A's): the top-left pixel matches A's render
    torch.testing.assert_close(gt[:, 0, 0], a["image"][:, 0, 0], atol=1e-4, rtol=0)


def test_driving_sequence_is_smooth_and_in_range():
    pose, expr = fw.driving_sequence(60, seed=2)
    assert pose.shape == (60, 3) and expr.shape == (60, 8)
    assert (pose.abs() <= torch.tensor(fw.POSE_LIMIT)).all()
    assert (pose.diff(dim=0).abs().max() < 5).item()  # degrees per frame
    assert expr.min() >= -1 and expr.max() <= 1
    assert expr[:, fw.EXPRESSION_NAMES.index("eye_open")].min() < -0.8  # at least one blink


def test_dfew_prototypes_and_sampler():
    e = fw.dfew_expression(torch.arange(7), 1.0)
    assert torch.equal(e[2], torch.zeros(8))  # neutral
    assert e[0, 0] == 1 and e[4, 1] > 0.5  # happiness smiles, surprise opens the mouth
    s = fw.sample_expression(2000, torch.Generator().manual_seed(0))
    assert (s >= fw.EXPRESSION_LOW).all() and (s <= fw.EXPRESSION_HIGH).all()
    assert (s.std(0) > 0.15).all()  # every coefficient varies


@pytest.mark.parametrize("mode", ["self", "cross"])
def test_reenactment_pairs_carry_the_exact_answer(mode):
    pairs = fw.ReenactmentPairs("test", size=32, n_pairs=6, mode=mode, seed=1)
    item = pairs[3]
    assert torch.equal(item["target"], pairs[3]["target"])  # deterministic
    expected = fw.render(item["source_identity"][None], item["driver_pose"][None], item["driver_expression"][None], 32)[
        0
    ]
    torch.testing.assert_close(item["target"], expected, atol=1e-5, rtol=0)
    assert int(item["source_index"]) in fw.SPLITS["test"] and int(item["driver_index"]) in fw.SPLITS["test"]
    if mode == "self":
        assert item["source_index"] == item["driver_index"]
        torch.testing.assert_close(item["target"], item["driver"], atol=1e-5, rtol=0)
        torch.testing.assert_close(item["target_landmarks"], item["driver_landmarks"])
    else:
        assert item["source_index"] != item["driver_index"]
        assert (item["target"] - item["driver"]).abs().mean() > 0.01


def test_render_sequence_matches_frame_by_frame():
    pose, expr = fw.driving_sequence(5, seed=1)
    ident = fw.identity_params([4])[0]
    seq = fw.render_sequence(ident, pose, expr, 16, chunk=2)
    one = fw.render(ident[None].expand(5, -1), pose, expr, 16)
    torch.testing.assert_close(seq, one, atol=1e-5, rtol=0)
