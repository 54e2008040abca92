"""Tests of common/face/flame.py and safe_pickle.py with tiny stand-ins of generic_model.pkl and
landmark_embedding.npy (chumpy-like objects, scipy sparse J_regressor, torch tensors inside the .npy)."""

from __future__ import annotations

import os
import pickle
import sys
import types

import numpy as np
import pytest
import scipy.sparse
import torch
from scipy.spatial.transform import Rotation

from common.face.flame import (
    FLAME,
    FLAMEFormatError,
    axis_angle_to_euler,
    decode_deca,
    euler_to_rotation_matrix,
    load_flame_model,
    load_landmark_embedding,
    orthographic_project,
    rotation_matrix_to_axis_angle,
    to_image_space,
)
from common.face.safe_pickle import UnsafePickleError, load_npy_object, load_restricted_pickle

V, J, F_, K = 12, 5, 16, 350


@pytest.fixture
def fake_chumpy(monkeypatch):
    """A stand-in ``chumpy.ch.Ch`` (pickled like chumpy: its state dict holds the array under 'x')."""
    ch_mod = types.ModuleType("chumpy.ch")

    class Ch:
        def __init__(self, x):
            self.x = np.asarray(x)
            self.label = None
            self._dirty_vars = set()

        def __getstate__(self):
            return {"x": self.x, "label": self.label, "_dirty_vars": self._dirty_vars, "_depends_on_deps": {}}

    Ch.__module__ = "chumpy.ch"
    Ch.__qualname__ = "Ch"
    ch_mod.Ch = Ch
    pkg = types.ModuleType("chumpy")
    pkg.ch = ch_mod
    monkeypatch.setitem(sys.modules, "chumpy", pkg)
    monkeypatch.setitem(sys.modules, "chumpy.ch", ch_mod)
    return Ch


def _raw_model(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    weights = rng.random((V, J))
    weights /= weights.sum(1, keepdims=True)
    jreg = rng.random((J, V)) * (rng.random((J, V)) > 0.5)
    jreg /= np.maximum(jreg.sum(1, keepdims=True), 1e-6)
    return {
        "v_template": rng.normal(size=(V, 3)),
        "shapedirs": rng.normal(size=(V, 3, K)) * 0.01,
        "posedirs": rng.normal(size=(V, 3, 9 * (J - 1))) * 0.01,
        "J_regressor": scipy.sparse.csc_matrix(jreg),
        "kintree_table": np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.int64),
        "weights": weights,
        "f": rng.integers(0, V, size=(F_, 3)).astype(np.uint32),
        "bs_style": "lbs",
    }


def _write_model(path, Ch, raw: dict, protocol: int = 2) -> None:
    obj = dict(raw)
    obj["v_template"] = Ch(raw["v_template"])
    obj["shapedirs"] = Ch(raw["shapedirs"])
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)


def _embedding(seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)

    def bary(*shape):
        b = rng.random((*shape, 3))
        return b / b.sum(-1, keepdims=True)

    dyn_idx = (np.arange(79 * 17).reshape(79, 17) % F_).astype(np.int64)
    return {
        "static_lmk_faces_idx": rng.integers(0, F_, 51),
        "static_lmk_bary_coords": bary(51),
        "dynamic_lmk_faces_idx": torch.from_numpy(dyn_idx),  # DECA's file stores these two as torch tensors
        "dynamic_lmk_bary_coords": torch.from_numpy(bary(79, 17)),
        "full_lmk_faces_idx": rng.integers(0, F_, (1, 68)),
        "full_lmk_bary_coords": bary(1, 68),
    }


@pytest.fixture
def flame_files(tmp_path, fake_chumpy):
    raw = _raw_model()
    model_path = tmp_path / "generic_model.pkl"
    _write_model(model_path, fake_chumpy, raw)
    emb = _embedding()
    emb_path = tmp_path / "landmark_embedding.npy"
    np.save(emb_path, emb, allow_pickle=True)
    return model_path, emb_path, raw, emb


def test_loaders_read_chumpy_sparse_and_torch_without_chumpy(flame_files, monkeypatch):
    model_path, emb_path, raw, emb = flame_files
    # chumpy must not be needed at load time.
    monkeypatch.delitem(sys.modules, "chumpy")
    monkeypatch.delitem(sys.modules, "chumpy.ch")
    model = load_flame_model(model_path)
    assert isinstance(model["v_template"], np.ndarray) and np.allclose(model["v_template"], raw["v_template"])
    assert np.allclose(model["shapedirs"], raw["shapedirs"])
    assert np.allclose(model["J_regressor"], raw["J_regressor"].toarray())
    lm = load_landmark_embedding(emb_path)
    assert lm["dynamic_lmk_faces_idx"].shape == (79, 17) and lm["full_lmk_faces_idx"].shape == (68,)
    assert np.array_equal(lm["dynamic_lmk_faces_idx"], emb["dynamic_lmk_faces_idx"].numpy())


def test_protocol1_python2_style_pickle(tmp_path, fake_chumpy):
    path = tmp_path / "generic_model_p1.pkl"
    _write_model(path, fake_chumpy, _raw_model(), protocol=1)
    assert load_flame_model(path)["shapedirs"].shape == (V, 3, K)


class _Payload:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (self.target,))


def test_malicious_pickles_are_refused(tmp_path):
    target = str(tmp_path / "pwned")
    evil = tmp_path / "generic_model.pkl"
    with open(evil, "wb") as f:
        pickle.dump({"v_template": _Payload(target)}, f, protocol=2)
    with pytest.raises(UnsafePickleError, match=r"generic_model\.pkl.*refused.*mkdir"):
        load_flame_model(evil)
    with pytest.raises(UnsafePickleError, match="refused"):
        load_restricted_pickle(evil)
    npy = tmp_path / "landmark_embedding.npy"
    np.save(npy, {"static_lmk_faces_idx": _Payload(target)}, allow_pickle=True)
    with pytest.raises(UnsafePickleError, match=r"landmark_embedding\.npy.*refused"):
        load_landmark_embedding(npy)
    assert not os.path.exists(target)
    # Another common vector: builtins.eval, and codecs other than latin-1.
    payload = b"cbuiltins\neval\n(S'1+1'\ntR."
    (tmp_path / "eval.pkl").write_bytes(payload)
    with pytest.raises(UnsafePickleError, match="builtins.eval"):
        load_restricted_pickle(tmp_path / "eval.pkl")
    # Torch tensors are refused unless allowed.
    (tmp_path / "t.pkl").write_bytes(pickle.dumps({"t": torch.zeros(2)}, protocol=2))
    with pytest.raises(UnsafePickleError, match="torch"):
        load_restricted_pickle(tmp_path / "t.pkl")
    assert torch.equal(load_restricted_pickle(tmp_path / "t.pkl", allow_torch=True)["t"], torch.zeros(2))
    # Plain numeric .npy files load too.
    np.save(tmp_path / "plain.npy", np.arange(4.0))
    assert np.array_equal(load_npy_object(tmp_path / "plain.npy"), np.arange(4.0))


def test_format_errors_name_file_and_field(tmp_path, fake_chumpy):
    raw = _raw_model()
    del raw["weights"]
    path = tmp_path / "no_weights.pkl"
    _write_model(path, fake_chumpy, raw)
    with pytest.raises(FLAMEFormatError, match=r"no_weights\.pkl.*weights"):
        load_flame_model(path)
    raw = _raw_model()
    raw["posedirs"] = raw["posedirs"][..., :30]
    path = tmp_path / "bad_posedirs.pkl"
    _write_model(path, fake_chumpy, raw)
    with pytest.raises(FLAMEFormatError, match=r"bad_posedirs\.pkl.*posedirs"):
        load_flame_model(path)
    emb = _embedding()
    emb["static_lmk_bary_coords"] = emb["static_lmk_bary_coords"][:50]
    np.save(tmp_path / "emb.npy", emb, allow_pickle=True)
    with pytest.raises(FLAMEFormatError, match=r"emb\.npy.*static_lmk_bary_coords"):
        load_landmark_embedding(tmp_path / "emb.npy")


def _rodrigues_np(aa: np.ndarray) -> np.ndarray:
    return Rotation.from_rotvec(aa).as_matrix()


def test_flame_zero_pose_is_template_plus_blendshapes(flame_files):
    model_path, emb_path, raw, _ = flame_files
    flame = FLAME(model_path, emb_path, n_shape=100, n_exp=50).double()
    torch.manual_seed(0)
    shape, exp = torch.randn(2, 100, dtype=torch.float64), torch.randn(2, 50, dtype=torch.float64)
    verts, lmk = flame(shape, exp, torch.zeros(2, 6, dtype=torch.float64))
    sd = raw["shapedirs"]
    expected = raw["v_template"][None] + np.einsum("bk,vck->bvc", shape.numpy(), sd[..., :100])
    expected += np.einsum("bk,vck->bvc", exp.numpy(), sd[..., 300:350])
    assert np.allclose(verts.numpy(), expected, atol=1e-5)
    assert lmk.shape == (2, 68, 3)


def test_flame_jaw_and_global_rotation_and_pose_blendshapes(flame_files, fake_chumpy, tmp_path):
    _, emb_path, raw, emb = flame_files
    raw = dict(raw)
    w = np.zeros((V, J))
    w[:4, 0] = 1.0  # vertices 0-3 follow the root (global rotation)
    w[4:, 2] = 1.0  # the rest follow the jaw
    raw["weights"] = w
    path = tmp_path / "rigged.pkl"
    _write_model(path, fake_chumpy, raw)
    flame = FLAME(path, emb_path).double()
    shape, exp = torch.zeros(1, 100, dtype=torch.float64), torch.zeros(1, 50, dtype=torch.float64)
    g, jaw = np.array([0.1, -0.3, 0.2]), np.array([0.25, 0.05, -0.1])
    pose = torch.from_numpy(np.concatenate([g, jaw]))[None]
    verts = flame(shape, exp, pose)[0][0].numpy()
    v = raw["v_template"]
    joints = raw["J_regressor"].toarray() @ v
    Rg, Rj = _rodrigues_np(g), _rodrigues_np(jaw)
    # Pose blend shapes: (R_k - I) of joints 1..4 (neck 0, jaw Rj, eyes 0) times posedirs.
    feat = np.concatenate([np.zeros(9), (Rj - np.eye(3)).ravel(), np.zeros(18)])
    v_posed = v + np.einsum("vcp,p->vc", raw["posedirs"], feat)
    root = (v_posed[:4] - joints[0]) @ Rg.T + joints[0]
    # Jaw chain: root(Rg about J0) o neck(identity about J1) o jaw(Rj about J2).
    jaw_world = Rg @ Rj
    jaw_joint_world = Rg @ (joints[2] - joints[0]) + joints[0]
    jawv = (v_posed[4:] - joints[2]) @ jaw_world.T + jaw_joint_world
    assert np.allclose(verts[:4], root, atol=1e-6)
    assert np.allclose(verts[4:], jawv, atol=1e-6)


def test_flame_landmarks_static_dynamic_and_full(flame_files):
    model_path, emb_path, _, emb = flame_files
    flame = FLAME(model_path, emb_path).double()
    zeros = torch.zeros(3, 100, dtype=torch.float64), torch.zeros(3, 50, dtype=torch.float64)
    # Global rotations about y by 0, +20 and -20 degrees: contour rows 0, 20 and 39 - (-20) = 59.
    pose = torch.zeros(3, 6, dtype=torch.float64)
    pose[1, 1], pose[2, 1] = np.deg2rad(20.0), np.deg2rad(-20.0)
    verts, lmk = flame(*zeros, pose)
    faces = flame.faces.numpy()
    dyn_idx, dyn_bary = emb["dynamic_lmk_faces_idx"].numpy(), emb["dynamic_lmk_bary_coords"].numpy()
    for b, row in enumerate([0, 20, 59]):
        vb = verts[b].numpy()
        for i in (0, 16):
            expect = (vb[faces[dyn_idx[row, i]]] * dyn_bary[row, i][:, None]).sum(0)
            assert np.allclose(lmk[b, i].numpy(), expect, atol=1e-6)
        s_idx, s_bary = emb["static_lmk_faces_idx"], emb["static_lmk_bary_coords"]
        for i in (0, 50):
            expect = (vb[faces[s_idx[i]]] * s_bary[i][:, None]).sum(0)
            assert np.allclose(lmk[b, 17 + i].numpy(), expect, atol=1e-6)
    l3 = flame.landmarks3d(verts)
    f_idx, f_bary = emb["full_lmk_faces_idx"][0], emb["full_lmk_bary_coords"][0]
    expect = (verts[0].numpy()[faces[f_idx[5]]] * f_bary[5][:, None]).sum(0)
    assert np.allclose(l3[0, 5].numpy(), expect, atol=1e-6)
    # Gradients reach every parameter group.
    shape = torch.zeros(1, 100, dtype=torch.float64, requires_grad=True)
    exp = torch.zeros(1, 50, dtype=torch.float64, requires_grad=True)
    p = torch.full((1, 6), 0.1, dtype=torch.float64, requires_grad=True)
    v, lm = flame(shape, exp, p)
    (v.sum() + lm.sum()).backward()
    assert shape.grad.abs().sum() > 0 and exp.grad.abs().sum() > 0 and p.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="pose"):
        flame(shape, exp, torch.zeros(1, 3, dtype=torch.float64))


def test_euler_conversion_round_trip_and_axes():
    torch.manual_seed(0)
    euler = torch.stack(
        [torch.empty(64).uniform_(-80, 80), torch.empty(64).uniform_(-60, 60), torch.empty(64).uniform_(-60, 60)], 1
    ).double()
    R = euler_to_rotation_matrix(euler)
    aa = rotation_matrix_to_axis_angle(R)
    assert torch.allclose(axis_angle_to_euler(aa), euler, atol=1e-6)
    # Independent axes: rotation by t about y gives yaw = -t, about x gives pitch t, about z gives roll t.
    t = 0.4
    for axis, col, sign in ((1, 0, -1.0), (0, 1, 1.0), (2, 2, 1.0)):
        v = torch.zeros(1, 3, dtype=torch.float64)
        v[0, axis] = t
        e = axis_angle_to_euler(v)[0]
        assert e[col].item() == pytest.approx(sign * np.rad2deg(t), abs=1e-6)
        assert e.abs().sum().item() == pytest.approx(np.rad2deg(t), abs=1e-6)
    # Matches scipy's intrinsic decomposition R = Rz(roll) Ry(-yaw) Rx(pitch).
    aa = torch.tensor([[0.2, -0.5, 0.3]], dtype=torch.float64)
    zyx = Rotation.from_rotvec(aa[0].numpy()).as_euler("ZYX", degrees=True)  # roll, -yaw, pitch
    assert torch.allclose(
        axis_angle_to_euler(aa)[0], torch.tensor([-zyx[1], zyx[2], zyx[0]], dtype=torch.float64), atol=1e-6
    )
    # The official gimbal branch: yaw beyond asin(0.998) snaps to 90 degrees with roll 0.
    near = torch.tensor([[0.0, -np.deg2rad(88.0), 0.0]], dtype=torch.float64)
    e = axis_angle_to_euler(near)[0]
    assert e[0].item() == pytest.approx(90.0) and e[2].item() == 0.0


def test_orthographic_camera():
    pts = torch.tensor([[[1.0, 2.0, 3.0]]])
    cam = torch.tensor([[2.0, 0.5, -1.0]])
    proj = orthographic_project(pts, cam)
    assert torch.allclose(proj, torch.tensor([[[3.0, 2.0, 6.0]]]))
    img = to_image_space(proj, 224)
    assert torch.allclose(img, torch.tensor([[[3.0 * 112 + 112, -2.0 * 112 + 112, -6.0 * 112 + 112]]]))


def test_decode_deca_projects_as_stylemask(flame_files):
    model_path, emb_path, _, _ = flame_files
    flame = FLAME(model_path, emb_path).double()
    torch.manual_seed(0)
    shape, exp = torch.randn(2, 100).double() * 0.5, torch.randn(2, 50).double() * 0.5
    pose = torch.randn(2, 6).double() * 0.1
    cam = torch.tensor([[8.0, 0.0, 0.0]] * 2).double()
    out = decode_deca(flame, shape, exp, pose, cam)
    verts, lmk = flame(shape, exp, pose)
    assert torch.allclose(out["vertices"], verts)
    # x*8*112+112, -y*8*112+112, -z*8*112+112 (224-pixel crop, y and z flipped)
    sign = torch.tensor([1.0, -1.0, -1.0]).double()
    assert torch.allclose(out["trans_verts"], verts * 8 * sign * 112 + 112)
    assert torch.allclose(out["landmarks2d"], (lmk * 8 * sign * 112 + 112)[..., :2])
    assert out["landmarks3d"].shape == (2, 68, 3)
