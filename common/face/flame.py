"""FLAME head model as DECA uses it, read without chumpy; rotation helpers; DECA's orthographic camera.

``FLAME(model, landmark_embedding)`` takes the dicts returned by ``load_flame_model`` (``generic_model.pkl``)
and ``load_landmark_embedding`` (``landmark_embedding.npy``), or their paths. ``forward(shape, expression,
pose)`` returns vertices ``[B,V,3]`` and DECA's 68 "2D" landmarks ``[B,68,3]`` (17 pose-dependent contour
points + 51 static ones); ``landmarks3d(vertices)`` gives the full 68-point 3D set. Pose is DECA's 6-vector:
global rotation (axis-angle) then jaw rotation; neck and eyes stay at zero unless given.

FLAME is licensed restrictively (non-commercial research, registration required): see ``common.weights``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from common.errors import UserError
from common.face.safe_pickle import load_npy_object, load_restricted_pickle
from common.weights import resolve

__all__ = [
    "FLAME",
    "FLAMEFormatError",
    "axis_angle_to_euler",
    "batch_rodrigues",
    "decode_deca",
    "euler_to_rotation_matrix",
    "load_flame_model",
    "load_landmark_embedding",
    "lbs",
    "orthographic_project",
    "rotation_matrix_to_axis_angle",
    "to_image_space",
]

NUM_SHAPE_COMPONENTS_IN_FILE = 300  # FLAME's shapedirs: 300 identity components, then the expression ones


class FLAMEFormatError(UserError, ValueError):
    """A FLAME / landmark-embedding file lacks a field or has a wrong shape; the message names both."""


def _dense(x: Any) -> np.ndarray:
    if hasattr(x, "toarray"):  # scipy sparse (FLAME's J_regressor)
        x = x.toarray()
    return np.asarray(x)


def load_flame_model(path: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """Read ``generic_model.pkl`` (registry ``flame_generic_model``) through the restricted unpickler.

    Returns numpy arrays: ``v_template [V,3]``, ``shapedirs [V,3,K]``, ``posedirs [V,3,P]``,
    ``J_regressor [J,V]`` (dense), ``kintree_table [2,J]``, ``weights [V,J]``, ``f [F,3]``.
    """
    p = resolve("flame_generic_model", path)
    raw = load_restricted_pickle(p)
    if not isinstance(raw, Mapping):
        raise FLAMEFormatError(f"{p}: expected a dict of FLAME arrays, got {type(raw).__name__}")
    need = ("v_template", "shapedirs", "posedirs", "J_regressor", "kintree_table", "weights", "f")
    missing = [k for k in need if k not in raw]
    if missing:
        raise FLAMEFormatError(f"{p}: missing FLAME fields {missing} (found {sorted(raw)})")
    out = {k: _dense(raw[k]) for k in need}
    V = out["v_template"].shape[0]
    J = out["kintree_table"].shape[-1]
    checks = {
        "v_template": out["v_template"].shape == (V, 3),
        "shapedirs": out["shapedirs"].ndim == 3 and out["shapedirs"].shape[:2] == (V, 3),
        "posedirs": out["posedirs"].shape[:2] == (V, 3) and out["posedirs"].shape[-1] == 9 * (J - 1),
        "J_regressor": out["J_regressor"].shape == (J, V),
        "kintree_table": out["kintree_table"].shape == (2, J),
        "weights": out["weights"].shape == (V, J),
        "f": out["f"].ndim == 2 and out["f"].shape[1] == 3,
    }
    bad = [f"{k} {out[k].shape}" for k, ok in checks.items() if not ok]
    if bad:
        raise FLAMEFormatError(f"{p}: inconsistent FLAME shapes (V={V}, J={J}): {', '.join(bad)}")
    return out


def load_landmark_embedding(path: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """Read DECA's ``landmark_embedding.npy`` (registry ``flame_landmark_embedding``) without ``allow_pickle``.

    The file is a pickled dict (some entries torch tensors); it goes through the restricted unpickler.
    """
    p = resolve("flame_landmark_embedding", path)
    raw = load_npy_object(p, allow_torch=True)
    if not isinstance(raw, Mapping):
        raise FLAMEFormatError(f"{p}: expected a pickled dict, got {type(raw).__name__}")
    shapes = {
        "static_lmk_faces_idx": (51,),
        "static_lmk_bary_coords": (51, 3),
        "dynamic_lmk_faces_idx": (79, 17),
        "dynamic_lmk_bary_coords": (79, 17, 3),
        "full_lmk_faces_idx": (68,),
        "full_lmk_bary_coords": (68, 3),
    }
    out = {}
    for key, shape in shapes.items():
        if key not in raw:
            raise FLAMEFormatError(f"{p}: missing landmark field {key!r} (found {sorted(raw)})")
        v = raw[key]
        v = v.numpy() if hasattr(v, "numpy") else np.asarray(v)
        if v.ndim == len(shape) + 1 and v.shape[0] == 1:  # full_* are stored with a leading batch axis
            v = v[0]
        if v.shape != shape:
            raise FLAMEFormatError(f"{p}: {key} has shape {v.shape}, expected {shape}")
        out[key] = v
    return out


# --------------------------------------------------------------------------------------------------
# Rotations
# --------------------------------------------------------------------------------------------------


def batch_rodrigues(rot_vecs: Tensor) -> Tensor:
    """Axis-angle ``[N,3]`` -> rotation matrices ``[N,3,3]`` (the SMPL/FLAME formula, +1e-8 in the angle)."""
    angle = torch.norm(rot_vecs + 1e-8, dim=1, keepdim=True)
    axis = rot_vecs / angle
    cos, sin = torch.cos(angle)[:, :, None], torch.sin(angle)[:, :, None]
    rx, ry, rz = axis.unbind(1)
    zeros = torch.zeros_like(rx)
    K = torch.stack([zeros, -rz, ry, rz, zeros, -rx, -ry, rx, zeros], 1).view(-1, 3, 3)
    eye = torch.eye(3, dtype=rot_vecs.dtype, device=rot_vecs.device)[None]
    return eye + sin * K + (1 - cos) * torch.bmm(K, K)


def axis_angle_to_euler(aa: Tensor) -> Tensor:
    """DECA global pose (axis-angle ``[B,3]``, radians) -> ``[B,3]`` (yaw, pitch, roll) in degrees.

    As StyleMask's ``batch_axis2euler`` + ``rad2deg``: with R the rotation matrix, yaw = asin(R[2,0]),
    pitch = atan2(R[2,1], R[2,2]), roll = atan2(R[1,0], R[0,0]); near |R[2,0]| = 1 (beyond 0.998)
    yaw is set to +-90 degrees, roll to 0 and pitch from the first row, as the official code.
    """
    if aa.ndim != 2 or aa.shape[1] != 3:
        raise ValueError(f"axis_angle_to_euler expects [B,3] axis-angle vectors, got {tuple(aa.shape)}")
    R = batch_rodrigues(aa)
    r20 = R[:, 2, 0]
    yaw = torch.asin(r20.clamp(-1.0, 1.0))
    pitch = torch.atan2(R[:, 2, 1], R[:, 2, 2])  # cos(yaw) > 0 cancels in atan2
    roll = torch.atan2(R[:, 1, 0], R[:, 0, 0])
    up, down = r20 > 0.998, r20 < -0.998
    half_pi = torch.full_like(yaw, math.pi / 2)
    yaw = torch.where(up, half_pi, torch.where(down, -half_pi, yaw))
    pitch = torch.where(
        up, torch.atan2(-R[:, 0, 1], -R[:, 0, 2]), torch.where(down, torch.atan2(R[:, 0, 1], R[:, 0, 2]), pitch)
    )
    roll = torch.where(up | down, torch.zeros_like(roll), roll)
    return torch.rad2deg(torch.stack([yaw, pitch, roll], 1))


def euler_to_rotation_matrix(euler_deg: Tensor) -> Tensor:
    """Inverse of ``axis_angle_to_euler`` (away from +-90 degree yaw): ``R = Rz(roll) Ry(-yaw) Rx(pitch)``."""
    yaw, pitch, roll = torch.deg2rad(euler_deg).unbind(1)
    one, zero = torch.ones_like(yaw), torch.zeros_like(yaw)

    def mat(rows: list[list[Tensor]]) -> Tensor:
        return torch.stack([torch.stack(r, -1) for r in rows], -2)

    cx, sx = torch.cos(pitch), torch.sin(pitch)
    cy, sy = torch.cos(-yaw), torch.sin(-yaw)
    cz, sz = torch.cos(roll), torch.sin(roll)
    rx = mat([[one, zero, zero], [zero, cx, -sx], [zero, sx, cx]])
    ry = mat([[cy, zero, sy], [zero, one, zero], [-sy, zero, cy]])
    rz = mat([[cz, -sz, zero], [sz, cz, zero], [zero, zero, one]])
    return rz @ ry @ rx


def rotation_matrix_to_axis_angle(R: Tensor) -> Tensor:
    """Rotation matrices ``[N,3,3]`` -> axis-angle ``[N,3]`` (angles below pi)."""
    cos = ((R.diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2).clamp(-1 + 1e-7, 1 - 1e-7)
    angle = torch.acos(cos)
    w = torch.stack([R[:, 2, 1] - R[:, 1, 2], R[:, 0, 2] - R[:, 2, 0], R[:, 1, 0] - R[:, 0, 1]], 1)
    return w * (angle / (2 * torch.sin(angle))).unsqueeze(1)


# --------------------------------------------------------------------------------------------------
# Linear blend skinning (SMPL/FLAME)
# --------------------------------------------------------------------------------------------------


def _rigid_transforms(rot_mats: Tensor, joints: Tensor, parents: Tensor) -> tuple[Tensor, Tensor]:
    """World transforms of the kinematic chain: ``(posed joints [B,J,3], relative transforms [B,J,4,4])``."""
    B, J = joints.shape[:2]
    rel = joints.clone()
    rel[:, 1:] = joints[:, 1:] - joints[:, parents[1:]]
    top = torch.cat([rot_mats, rel.unsqueeze(-1)], -1)  # [B,J,3,4]
    bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=joints.dtype, device=joints.device).expand(B, J, 1, 4)
    local = torch.cat([top, bottom], -2)
    chain = [local[:, 0]]
    for i in range(1, J):
        chain.append(chain[int(parents[i])] @ local[:, i])
    world = torch.stack(chain, 1)
    posed_joints = world[:, :, :3, 3]
    # Transforms relative to the rest pose: subtract the rotated rest joint from the translation.
    rest = torch.cat([joints, torch.zeros_like(joints[..., :1])], -1).unsqueeze(-1)  # [B,J,4,1]
    shift = world @ rest
    rel_t = world - torch.cat([torch.zeros_like(world[..., :3]), shift], -1)
    return posed_joints, rel_t


def lbs(
    betas: Tensor,
    full_pose: Tensor,
    v_template: Tensor,
    shapedirs: Tensor,
    posedirs: Tensor,
    J_regressor: Tensor,
    parents: Tensor,
    lbs_weights: Tensor,
) -> tuple[Tensor, Tensor]:
    """Blend shapes, pose blend shapes and linear blend skinning.

    ``betas [B,K]``, ``full_pose [B,3J]`` axis-angle, ``v_template [V,3]``, ``shapedirs [V,3,K]``,
    ``posedirs [9(J-1), 3V]``, ``J_regressor [J,V]``, ``parents [J]``, ``lbs_weights [V,J]``.
    Returns ``(vertices [B,V,3], joints [B,J,3])``.
    """
    B = betas.shape[0]
    v_shaped = v_template.unsqueeze(0) + torch.einsum("bl,mkl->bmk", betas, shapedirs)
    joints = torch.einsum("jv,bvk->bjk", J_regressor, v_shaped)
    rot_mats = batch_rodrigues(full_pose.reshape(-1, 3)).view(B, -1, 3, 3)
    eye = torch.eye(3, dtype=betas.dtype, device=betas.device)
    pose_feature = (rot_mats[:, 1:] - eye).reshape(B, -1)
    v_posed = v_shaped + (pose_feature @ posedirs).view(B, -1, 3)
    posed_joints, A = _rigid_transforms(rot_mats, joints, parents)
    T = torch.einsum("vj,bjmn->bvmn", lbs_weights, A)
    v_h = torch.cat([v_posed, torch.ones_like(v_posed[..., :1])], -1)
    verts = (T @ v_h.unsqueeze(-1))[..., :3, 0]
    return verts, posed_joints


def _to_tensor(x: Any, dtype: torch.dtype) -> Tensor:
    return torch.as_tensor(np.asarray(x), dtype=dtype)


class FLAME(nn.Module):
    """FLAME with DECA's conventions (``n_shape`` identity and ``n_exp`` expression components).

    ``model``/``landmark_embedding``: dicts from the loaders above or paths (None: registry defaults).
    """

    def __init__(
        self,
        model: Mapping[str, Any] | str | os.PathLike | None = None,
        landmark_embedding: Mapping[str, Any] | str | os.PathLike | None = None,
        n_shape: int = 100,
        n_exp: int = 50,
    ) -> None:
        super().__init__()
        if model is None or isinstance(model, (str, os.PathLike)):
            model = load_flame_model(model)
        if landmark_embedding is None or isinstance(landmark_embedding, (str, os.PathLike)):
            landmark_embedding = load_landmark_embedding(landmark_embedding)
        f32 = torch.float32
        shapedirs = _to_tensor(model["shapedirs"], f32)
        K = shapedirs.shape[-1]
        if n_shape > NUM_SHAPE_COMPONENTS_IN_FILE or K < NUM_SHAPE_COMPONENTS_IN_FILE + n_exp:
            raise FLAMEFormatError(
                f"shapedirs has {K} components; need {NUM_SHAPE_COMPONENTS_IN_FILE} identity + {n_exp} expression"
            )
        self.n_shape, self.n_exp = n_shape, n_exp
        start = NUM_SHAPE_COMPONENTS_IN_FILE
        self.register_buffer(
            "shapedirs", torch.cat([shapedirs[..., :n_shape], shapedirs[..., start : start + n_exp]], -1)
        )
        self.register_buffer("v_template", _to_tensor(model["v_template"], f32))
        self.register_buffer("faces", _to_tensor(model["f"], torch.long))
        posedirs = np.asarray(model["posedirs"], dtype=np.float32)
        self.register_buffer("posedirs", torch.from_numpy(posedirs.reshape(-1, posedirs.shape[-1]).T.copy()))
        self.register_buffer("J_regressor", _to_tensor(_dense(model["J_regressor"]), f32))
        parents = _to_tensor(model["kintree_table"][0], torch.long)
        parents[0] = -1
        self.register_buffer("parents", parents)
        self.register_buffer("lbs_weights", _to_tensor(model["weights"], f32))
        lm = landmark_embedding
        self.register_buffer("static_faces_idx", _to_tensor(lm["static_lmk_faces_idx"], torch.long))
        self.register_buffer("static_bary", _to_tensor(lm["static_lmk_bary_coords"], f32))
        self.register_buffer("dynamic_faces_idx", _to_tensor(lm["dynamic_lmk_faces_idx"], torch.long))
        self.register_buffer("dynamic_bary", _to_tensor(lm["dynamic_lmk_bary_coords"], f32))
        self.register_buffer("full_faces_idx", _to_tensor(lm["full_lmk_faces_idx"], torch.long).reshape(-1))
        self.register_buffer("full_bary", _to_tensor(lm["full_lmk_bary_coords"], f32).reshape(-1, 3))
        if int(self.faces.max()) >= self.v_template.shape[0]:
            raise FLAMEFormatError("FLAME faces index beyond the vertex count")
        for name in ("static_faces_idx", "dynamic_faces_idx", "full_faces_idx"):
            if int(getattr(self, name).max()) >= self.faces.shape[0]:
                raise FLAMEFormatError(f"landmark embedding {name} indexes beyond the {self.faces.shape[0]} faces")

    @property
    def num_joints(self) -> int:
        return self.parents.shape[0]

    def _landmarks(self, vertices: Tensor, faces_idx: Tensor, bary: Tensor) -> Tensor:
        """Barycentric interpolation: ``faces_idx [B,L]``, ``bary [B,L,3]`` -> ``[B,L,3]``."""
        tri = self.faces[faces_idx]  # [B,L,3] vertex indices
        B = vertices.shape[0]
        pts = vertices[torch.arange(B, device=vertices.device)[:, None, None], tri]  # [B,L,3(corner),3(xyz)]
        return torch.einsum("blfi,blf->bli", pts, bary)

    def _contour_rows(self, full_pose: Tensor) -> Tensor:
        """Row of the dynamic contour table from the head's yaw (global x neck rotation), as DECA."""
        B = full_pose.shape[0]
        rots = batch_rodrigues(full_pose.view(B, -1, 3)[:, :2].reshape(-1, 3)).view(B, 2, 3, 3)
        rel = rots[:, 0] @ rots[:, 1]  # global @ neck: the chain neck -> root
        y = torch.atan2(-rel[:, 2, 0], torch.sqrt(rel[:, 0, 0] ** 2 + rel[:, 1, 0] ** 2))
        y = torch.round(torch.clamp(torch.rad2deg(y), max=39)).long()
        neg = y < 0
        return torch.where(neg, torch.where(y < -39, torch.full_like(y, 78), 39 - y), y)

    def forward(
        self,
        shape: Tensor,
        expression: Tensor,
        pose: Tensor,
        neck_pose: Tensor | None = None,
        eye_pose: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """``shape [B,n_shape]``, ``expression [B,n_exp]``, ``pose [B,6]`` (global, jaw) ->
        ``(vertices [B,V,3], landmarks68 [B,68,3])`` (DECA's landmarks2d set, before projection)."""
        B = shape.shape[0]
        if shape.shape != (B, self.n_shape) or expression.shape != (B, self.n_exp) or pose.shape != (B, 6):
            raise ValueError(
                f"FLAME expects shape [B,{self.n_shape}], expression [B,{self.n_exp}], pose [B,6]; got "
                f"{tuple(shape.shape)}, {tuple(expression.shape)}, {tuple(pose.shape)}"
            )
        zeros3 = pose.new_zeros(B, 3)
        neck = neck_pose if neck_pose is not None else zeros3
        eyes = eye_pose if eye_pose is not None else pose.new_zeros(B, 3 * (self.num_joints - 3))
        full_pose = torch.cat([pose[:, :3], neck, pose[:, 3:], eyes], 1)
        betas = torch.cat([shape, expression], 1)
        verts, _ = lbs(
            betas,
            full_pose,
            self.v_template,
            self.shapedirs,
            self.posedirs,
            self.J_regressor,
            self.parents,
            self.lbs_weights,
        )
        rows = self._contour_rows(full_pose)
        faces_idx = torch.cat([self.dynamic_faces_idx[rows], self.static_faces_idx.expand(B, -1)], 1)
        bary = torch.cat([self.dynamic_bary[rows], self.static_bary.expand(B, -1, -1)], 1)
        return verts, self._landmarks(verts, faces_idx, bary)

    def landmarks3d(self, vertices: Tensor) -> Tensor:
        """The full 68 3D landmarks ``[B,68,3]`` of ``vertices [B,V,3]`` (no contour switching)."""
        B = vertices.shape[0]
        return self._landmarks(vertices, self.full_faces_idx.expand(B, -1), self.full_bary.expand(B, -1, -1))


def orthographic_project(points: Tensor, cam: Tensor) -> Tensor:
    """DECA's ``batch_orth_proj``: ``cam [B,3] = (scale, tx, ty)``; ``(xy + t) * s`` and ``z * s``. ``[B,N,3]``."""
    cam = cam.reshape(-1, 1, 3)
    xy = (points[..., :2] + cam[..., 1:]) * cam[..., :1]
    return torch.cat([xy, points[..., 2:] * cam[..., :1]], -1)


def to_image_space(projected: Tensor, image_size: int = 224) -> Tensor:
    """DECA's decode: flip y and z of projected points, then ``* size/2 + size/2`` (pixels of the 224 crop)."""
    flipped = torch.cat([projected[..., :1], -projected[..., 1:]], -1)
    return flipped * (image_size / 2) + image_size / 2


def decode_deca(
    flame: FLAME,
    shape: Tensor,
    expression: Tensor,
    pose: Tensor,
    cam: Tensor,
    image_size: int = 224,
) -> dict[str, Tensor]:
    """DECA's ``decode`` as StyleMask calls it: FLAME, orthographic camera, image space of the 224 crop.

    Returns ``vertices [B,V,3]`` (model space), ``trans_verts [B,V,3]`` (projected, y/z flipped, pixels),
    ``landmarks2d [B,68,2]`` and ``landmarks3d [B,68,3]`` (pixels). StyleMask's losses fix ``cam`` to
    ``[8, 0, 0]`` for both sides of a comparison: pass that explicitly.
    """
    verts, lmk = flame(shape, expression, pose)
    return {
        "vertices": verts,
        "trans_verts": to_image_space(orthographic_project(verts, cam), image_size),
        "landmarks2d": to_image_space(orthographic_project(lmk, cam), image_size)[..., :2],
        "landmarks3d": to_image_space(orthographic_project(flame.landmarks3d(verts), cam), image_size),
    }
