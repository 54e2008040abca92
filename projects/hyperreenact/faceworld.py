"""HyperReenact in the face world: the face-world networks where the real ones are, pairs rendered with the exact
answer, and the shipped trained hypernetwork.

``encoders: faceworld`` (``HyperReenactModule``) puts

* the face-world StyleGAN2 (registry ``faceworld_generator``, 64 px) where the VoxCeleb generator is;
* the face-world e4e (registry ``faceworld_e4e``) where HyperReenact's e4e is;
* the identity expert (``FaceWorldIdentity``, ``faceworld_identity``) where ArcFace is: appearance map
  ``[B, 96, 7, 7]`` and embedding, on the expert's own pSp crop (see :func:`build_faceworld_parts` for why);
* the attribute expert (``FaceWorldAttributes``, ``faceworld_attributes``) where DECA's encoder is: pose map and
  parameters on DECA's crop at 56 px, the crop taken from the landmark box as the expert was trained;
* the renderer's geometry (``FaceWorldFLAME``) where FLAME is, ``FaceWorldPerceptual`` where LPIPS is, and the
  expert's landmark estimate as the landmark detector of the evaluation.

Losses and metrics then run the same code as with the real networks (``module.py``, ``evaluate.py``).
``encoders: faceworld_random`` builds the same classes with random weights (tests, and development before the
trained files exist). Data: :class:`FaceWorldTrainingPairs` (train-split identities: source, a second frame of
the same identity, a frame of another identity) and :class:`FaceWorldEvaluationPairs` (``common.data.faceworld``'s
``ReenactmentPairs`` with the exact render of the source identity in the driver's pose and expression).

The shipped file ``pretrained/faceworld/faceworld_hyperreenact.pt`` holds only the trained hypernetwork (float16)
and the module's hyperparameters; the frozen networks come from their own shipped files (written by
``python -m projects.hyperreenact.export``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from common.data import faceworld as fw
from common.face.align import lm68_to_lm5
from projects.hyperreenact.model import AppearanceEncoder, PoseEncoder, mean_latent

GENERATOR = "faceworld_generator"
E4E = "faceworld_e4e"
SHIPPED = "faceworld_hyperreenact"
SHIPPED_FORMAT = "paperlab-hyperreenact-faceworld"
ENCODER_KINDS = ("faceworld", "faceworld_random")


# --------------------------------------------------------------------------------------------- annotations
def landmark_boxes(landmarks: Tensor) -> Tensor:
    """Extents (left, top, right, bottom) ``[..., 4]`` of landmarks ``[..., N, 2]`` (pixels)."""
    return torch.cat([landmarks.amin(-2), landmarks.amax(-2)], -1)


def fixed_boxes(images: Tensor) -> Tensor:
    """The face world's fixed landmark box (``FACEWORLD_FACE_BOX``) of ``images [B,3,H,W]`` -> ``[B, 4]`` pixels."""
    from common.face.faceworld_experts import FACEWORLD_FACE_BOX

    b, _, h, w = images.shape
    left, top, right, bottom = FACEWORLD_FACE_BOX
    return images.new_tensor([left * w, top * h, right * w, bottom * h]).expand(b, 4)


class ExpertLandmarks(nn.Module):
    """The face world's landmark detector: ``images [B,3,H,W]`` in [-1, 1] -> 68 landmarks ``[B,68,2]`` (pixels),
    estimated DECA's way by the attribute expert (``common.face.faceworld_experts.estimate_landmarks``)."""

    def __init__(self, attributes: nn.Module) -> None:
        super().__init__()
        from common.face.faceworld_experts import FaceWorldFLAME

        self.attributes = attributes
        self.flame = FaceWorldFLAME()

    def forward(self, images: Tensor) -> Tensor:
        from common.face.faceworld_experts import estimate_landmarks

        return estimate_landmarks(self.attributes, images, self.flame)


# --------------------------------------------------------------------------------------------- networks
def _registered(name: str, path: str | os.PathLike | None) -> Path:
    """``common.weights.resolve`` (a missing file names where it goes and the command that rebuilds it). An artifact
    not registered yet (the issue that trains it registers it) is read from ``path`` or from where it will ship."""
    from common.weights import REGISTRY, SHIPPED_DIR, MissingWeightsError, resolve

    if name not in REGISTRY:
        candidate = Path(path) if path is not None else SHIPPED_DIR / "faceworld" / f"{name}.pt"
        if candidate.is_file():
            return candidate
        raise MissingWeightsError(f"{name}: not registered in common/weights.py yet and no file at {candidate}")
    return resolve(name, path)


def load_faceworld_generator(path: str | os.PathLike | None = None) -> nn.Module:
    """The face-world StyleGAN2 (registry ``faceworld_generator``; rosinality layout, ``g_ema``), strict; a
    ``projects/stylegan2`` Lightning checkpoint (``.ckpt``, its ``g_ema``) also reads, for runs on an intermediate
    generator."""
    from common.stylegan2.sample import load_any_generator

    return load_any_generator(_registered(GENERATOR, path))


def load_faceworld_e4e(path: str | os.PathLike | None = None, generator: nn.Module | None = None) -> nn.Module:
    """The face-world e4e (registry ``faceworld_e4e``): image ``[B,3,64,64]`` in [-1, 1] -> the W+ the generator
    reads (``latent_avg`` added, trained against the untruncated generator); checked against ``generator``."""
    from common.stylegan2.faceworld_e4e import load_faceworld_e4e as _load

    return _load(_registered(E4E, path), generator=generator)


def build_faceworld_parts(
    kind: str,
    generator_path: str | None = None,
    e4e_path: str | None = None,
    identity_path: str | None = None,
    attributes_path: str | None = None,
    need_training_parts: bool = True,
    size: int = 64,
    style_dim: int = 512,
    channel_max: int = 128,
    channel_base: int | None = 2048,
    seed: int = 0,
) -> dict[str, nn.Module]:
    """The face-world networks in the places of the real ones (see the module docstring).

    ``kind="faceworld"`` loads the shipped files (registry paths unless given); ``"faceworld_random"`` builds the
    same classes with random weights and no file (generator ``Generator(size, style_dim, channel_max=...,
    channel_base=...)``, the face-world e4e's architecture for it, default-width experts).

    Appearance: the identity expert on its own pSp crop, not on HyperReenact's five-point alignment, since the
    expert was trained on exactly that crop (with small jitter); a five-point crop frames the face differently
    (tighter, eyes at the template's height) and would feed it inputs it never saw. Pose: DECA's crop of the
    landmark box at the expert's 56 px, not kornia-0.4 sampled (the expert was trained on the plain crop).
    """
    from common.face import faceworld_experts as fwe
    from common.stylegan2.faceworld_e4e import build_faceworld_e4e
    from common.stylegan2.generator import Generator

    if kind not in ENCODER_KINDS:
        raise ValueError(f"face-world encoders must be one of {ENCODER_KINDS}, got {kind!r}")
    if kind == "faceworld":
        gen = load_faceworld_generator(generator_path)
        inverter = load_faceworld_e4e(e4e_path, generator=gen)
        identity = fwe.load_faceworld_identity(identity_path)
        attributes = fwe.load_faceworld_attributes(attributes_path)
    else:
        given = [n for n, v in (("generator", generator_path), ("e4e", e4e_path)) if v is not None]
        given += [n for n, v in (("arcface", identity_path), ("deca", attributes_path)) if v is not None]
        if given:
            raise ValueError(f"encoders='faceworld_random' builds random networks: drop the *_path options {given}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            gen = Generator(size, style_dim=style_dim, n_mlp=8, channel_max=channel_max, channel_base=channel_base)
            inverter = build_faceworld_e4e(gen.eval()).freeze()
            inverter.set_latent_avg(mean_latent(gen, 1024, seed))
            identity, attributes = fwe.FaceWorldIdentity().freeze(), fwe.FaceWorldAttributes().freeze()
    parts: dict[str, nn.Module] = {
        "generator": gen,
        "inverter": inverter,
        "app_encoder": AppearanceEncoder(identity, align="net"),
        "pose_encoder": PoseEncoder(attributes, crop_size=fwe.INPUT_SIZE, kornia_compat=False, box_rule="landmarks"),
        "landmarker": ExpertLandmarks(attributes),
    }
    if need_training_parts:
        parts["flame"] = fwe.FaceWorldFLAME()
        parts["lpips"] = fwe.FaceWorldPerceptual(identity, attributes)
    return parts


# --------------------------------------------------------------------------------------------- data
def _frame_keys(prefix: str, images: Tensor, lm68: Tensor) -> dict[str, Tensor]:
    return {prefix: images, f"{prefix}_lm5": lm68_to_lm5(lm68), f"{prefix}_box": landmark_boxes(lm68)}


class FaceWorldTrainingPairs(Dataset):
    """Training items in the VoxCeleb pairs' format, rendered on the fly from train-split identities.

    Item ``i``: ``source`` (identity A, pose and expression p1), ``target`` (A at p2: self-reenactment, the
    "same video"), ``cross`` (identity B != A at p3: cross-reenactment; no ground truth is given, as in the
    paper), each with ``_lm5`` and ``_box`` from the renderer's 68 landmarks (the data's annotation, as the
    detector's on real frames). Deterministic in ``(seed, epoch, i)``; :meth:`set_epoch` redraws.
    """

    def __init__(self, n_pairs: int = 4096, size: int = 64, seed: int = 0, split: str = "train") -> None:
        if split not in fw.SPLITS:
            raise ValueError(f"faceworld split must be one of {sorted(fw.SPLITS)}, got {split!r}")
        self.n_pairs, self.size, self.seed, self.split, self.epoch = int(n_pairs), size, seed, split, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n_pairs

    def params(self, i: int) -> dict[str, Tensor]:
        """Item ``i``'s world parameters: ``identity`` ``[3, IDENTITY_DIM]``, ``pose`` ``[3, 3]``, ``expression``
        ``[3, 8]``, ``identity_index`` ``[3]``, rows in the order source, target, cross."""
        if not 0 <= i < self.n_pairs:
            raise IndexError(f"faceworld training pair {i} out of range for {self.n_pairs}")
        ids = fw.SPLITS[self.split]
        seed = int(np.random.SeedSequence([self.seed, self.epoch, i]).generate_state(1)[0])
        g = torch.Generator().manual_seed(seed)
        a = int(torch.randint(len(ids), (1,), generator=g))
        b = (a + 1 + int(torch.randint(len(ids) - 1, (1,), generator=g))) % len(ids)
        index = torch.tensor([ids.start + a, ids.start + a, ids.start + b])
        return {
            "identity": fw.identity_params(index),
            "identity_index": index,
            "pose": fw.sample_pose(3, g),
            "expression": fw.sample_expression(3, g),
        }

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        p = self.params(i)
        images = fw.render(p["identity"], p["pose"], p["expression"], self.size)
        lm = fw.landmarks(p["identity"], p["pose"], p["expression"], self.size)
        out: dict[str, Tensor] = {}
        for k, prefix in enumerate(("source", "target", "cross")):
            out.update(_frame_keys(prefix, images[k], lm[k]))
        return out


class FaceWorldEvaluationPairs(Dataset):
    """``common.data.faceworld.ReenactmentPairs`` in the evaluation's format: ``source``, ``target`` (the driving
    frame) with ``_lm5``/``_box`` from the renderer's landmarks, ``truth`` (the exact answer: the source identity
    in the driver's pose and expression; the driver itself in self-reenactment), ``truth_landmarks`` ``[68, 2]``,
    ``source_landmarks``, ``target_landmarks``, ``pair_index``."""

    def __init__(self, split: str = "test", size: int = 64, n_pairs: int = 200, mode: str = "cross", seed: int = 0):
        self.pairs = fw.ReenactmentPairs(split, size, n_pairs, mode, seed)
        self.mode = mode

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        p = self.pairs[i]
        out = _frame_keys("source", p["source"], p["source_landmarks"])
        out.update(_frame_keys("target", p["driver"], p["driver_landmarks"]))
        out.update(
            truth=p["target"],
            truth_landmarks=p["target_landmarks"],
            source_landmarks=p["source_landmarks"],
            target_landmarks=p["driver_landmarks"],
            pair_index=torch.tensor(i),
        )
        return out


# --------------------------------------------------------------------------------------------- shipped file
def export_hypernet(module: nn.Module, path: str | os.PathLike, metrics: dict | None = None) -> Path:
    """Write the trained hypernetwork of a face-world ``HyperReenactModule`` as the shipped file: float16 weights,
    the mean latent and the hyperparameters (the frozen networks are other shipped files)."""
    hp = dict(module.hparams)
    if hp.get("encoders") != "faceworld":
        raise ValueError(f"only a face-world module (encoders='faceworld') is shipped, got {hp.get('encoders')!r}")
    for k in ("generator_path", "e4e_path", "arcface_path", "deca_path", "hypernet_path"):
        hp[k] = None  # the registry's files on the user's machine
    state, shared = {}, {}
    for k, v in module.net.hypernet.state_dict().items():
        # the shared hypernet repeats under every block's key: keep one float16 copy (torch.save stores it once)
        key = (v.data_ptr(), tuple(v.shape))
        if key not in shared:
            shared[key] = v.detach().to(torch.float16).clone()
        state[k] = shared[key]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "format": SHIPPED_FORMAT,
            "hparams": hp,
            "hypernet": state,
            "trunc_latent": module.net.trunc_latent.detach().clone(),
            "metrics": metrics or {},
        },
        path,
    )
    return path


def is_shipped_file(ckpt: object) -> bool:
    """Whether a loaded checkpoint dict is the shipped face-world hypernetwork file."""
    return isinstance(ckpt, dict) and ckpt.get("format") == SHIPPED_FORMAT


def read_shipped(path: str | os.PathLike) -> dict:
    """The shipped file's dict (weights_only load); errors name the file and the problem."""
    from common.face.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path, "face-world HyperReenact file")
    if not is_shipped_file(ckpt):
        raise ValueError(f"{path}: not a shipped face-world HyperReenact file (expected format={SHIPPED_FORMAT!r})")
    for key in ("hparams", "hypernet", "trunc_latent"):
        if key not in ckpt:
            raise ValueError(f"{path}: shipped file without {key!r}")
    return ckpt
