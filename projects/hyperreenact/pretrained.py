"""Loaders of the released networks HyperReenact runs on (all weights_only, strict, frozen by the caller).

Each takes a local path (``common.weights.resolve`` gives the registry's) and returns a module with the
interface :mod:`projects.hyperreenact.model` expects.
"""

from __future__ import annotations

import os

from torch import nn


def load_voxceleb_generator(path: str | os.PathLike) -> nn.Module:
    """The VoxCeleb StyleGAN2 (256 px, channel_multiplier 1) from ``stylegan-voxceleb.pt`` (``g_ema``).

    The official code loads it with ``strict=False``; here every key must be present (a file with fewer mapping
    layers or no noise buffers fails with the list of missing keys instead of running with random ones).
    """
    from common.stylegan2.checkpoints import load_generator

    gen = load_generator(path)
    if gen.size != 256:
        raise ValueError(f"{path}: expected the 256 px VoxCeleb generator, got {gen.size} px")
    return gen


def load_voxceleb_e4e(path: str | os.PathLike) -> nn.Module:
    """e4e of ``e4e-voxceleb.pt`` (``ckpt['e']``, 14 styles); its output is used as is (no ``latent_avg``)."""
    from common.stylegan2.encoders import load_e4e

    enc = load_e4e(path, add_latent_avg=False)
    if enc.n_styles != 14:
        raise ValueError(f"{path}: expected an encoder with 14 styles (256 px), got {enc.n_styles}")
    return enc


def load_arcface(path: str | os.PathLike) -> nn.Module:
    """ArcFace IR-SE-50 (``insight_face.pth`` / ``model_ir_se50.pth``, plain state dict) -> ``Backbone``."""
    from common.face.identity import load_arcface as _load

    return _load(path).eval()


def load_deca(path: str | os.PathLike) -> nn.Module:
    """DECA's coarse encoder (``deca_model.tar['E_flame']``): ``features`` (layer4) and ``params_from_features``."""
    from common.face.deca import load_deca_encoder

    return load_deca_encoder(path).eval()


def load_flame(model_path: str | os.PathLike, landmarks_path: str | os.PathLike) -> nn.Module:
    """FLAME from ``generic_model.pkl`` and DECA's ``landmark_embedding.npy``: ``forward(shape, exp, pose)``."""
    from common.face.flame import FLAME

    return FLAME(model_path, landmarks_path).eval()


def load_lpips(backbone_path: str | os.PathLike | None = None) -> nn.Module:
    """LPIPS (AlexNet) on [-1, 1] inputs with a local trunk (registry ``lpips_alexnet_backbone``); ``(x, y) -> [B]``."""
    from common.face.lpips import LPIPS

    return LPIPS(net="alex", backbone_path=backbone_path).eval()


def count_parameters(m: nn.Module) -> int:
    """Unique parameters of ``m``."""
    return sum(p.numel() for p in {id(p): p for p in m.parameters()}.values())


__all__ = [
    "count_parameters",
    "load_arcface",
    "load_deca",
    "load_flame",
    "load_lpips",
    "load_voxceleb_e4e",
    "load_voxceleb_generator",
]
