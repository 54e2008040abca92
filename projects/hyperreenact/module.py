"""HyperReenact LightningModule: builds the network (pretrained or tiny stand-ins), trains only the reenactment
module and hypernetwork with the inversion -> self -> cross curriculum, and reenacts in ``predict``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.callbacks import Callback
from PIL import Image
from torch import Tensor, nn

from common.checkpoint import CheckpointMixin
from common.face.losses import flame_shape_terms, identity_loss
from projects.hyperreenact import pretrained
from projects.hyperreenact.faceworld import ENCODER_KINDS as FACEWORLD_KINDS
from projects.hyperreenact.faceworld import build_faceworld_parts, is_shipped_file, read_shipped
from projects.hyperreenact.frames import to_uint8
from projects.hyperreenact.hypernet import HypernetworkBlocks, load_released_hypernet, official_layer_table
from projects.hyperreenact.loss import lpips_loss, pixel_l1, weighted_total
from projects.hyperreenact.model import (
    AppearanceEncoder,
    HyperReenactor,
    PoseEncoder,
    TinyArcFace,
    TinyDECA,
    TinyFLAME,
    TinyInverter,
    TinyLPIPS,
    build_tiny_generator,
    mean_latent,
)

PHASES = ("inversion", "self", "cross")


def _freeze(m: nn.Module) -> nn.Module:
    m.eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def build_tiny_parts(
    size: int, style_dim: int, channel_max: int, feature_channels: int, pose_channels: int, seed: int
) -> dict[str, nn.Module]:
    """Small random instances with the real interfaces (generator: the real class), reproducible from ``seed``."""
    gen = build_tiny_generator(size=size, style_dim=style_dim, channel_max=channel_max, seed=seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        deca = TinyDECA(pose_channels)
        parts = {
            "generator": gen,
            "inverter": TinyInverter(gen.n_latent, style_dim),
            "app_encoder": AppearanceEncoder(TinyArcFace(feature_channels), align_size=28),
            "pose_encoder": PoseEncoder(deca, crop_size=28),
            "flame": TinyFLAME(deca.splits["shape"], deca.splits["exp"]),
            "lpips": TinyLPIPS(),
        }
    return parts


def build_pretrained_parts(
    generator_path: str | None,
    e4e_path: str | None,
    arcface_path: str | None,
    deca_path: str | None,
    flame_path: str | None,
    flame_landmarks_path: str | None,
    lpips_path: str | None,
    need_training_parts: bool,
) -> dict[str, nn.Module]:
    """The released networks, each through ``common.weights.resolve`` (a missing file names where it goes)."""
    from common.weights import resolve

    parts: dict[str, nn.Module] = {
        "generator": pretrained.load_voxceleb_generator(resolve("hyperreenact_stylegan2_voxceleb", generator_path)),
        "inverter": pretrained.load_voxceleb_e4e(resolve("hyperreenact_e4e_voxceleb", e4e_path)),
        "app_encoder": AppearanceEncoder(pretrained.load_arcface(resolve("hyperreenact_arcface", arcface_path))),
        "pose_encoder": PoseEncoder(pretrained.load_deca(resolve("deca_model", deca_path))),
    }
    if need_training_parts:
        parts["flame"] = pretrained.load_flame(
            resolve("flame_generic_model", flame_path), resolve("flame_landmark_embedding", flame_landmarks_path)
        )
        parts["lpips"] = pretrained.load_lpips(lpips_path)
    return parts


def load_hypernet_file(hypernet: HypernetworkBlocks, path: str | os.PathLike) -> HypernetworkBlocks:
    """Initialise ``hypernet`` from the released ``hypernetwork.pt`` or from the shipped face-world file (its
    float16 hypernetwork, as float32), strictly."""
    from common.face.checkpoint import load_checkpoint

    if Path(path).suffix == ".pt" and Path(path).is_file() and is_shipped_file(load_checkpoint(path, "hypernetwork")):
        state = read_shipped(path)["hypernet"]
        try:
            hypernet.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
        except RuntimeError as err:
            raise ValueError(f"{path}: does not match this hypernetwork definition: {err}") from err
        return hypernet
    return load_released_hypernet(hypernet, path)


class HyperReenactModule(CheckpointMixin, LightningModule):
    """HyperReenact training and inference.

    Network: ``encoders="pretrained"`` loads the released VoxCeleb generator, e4e, ArcFace and DECA (and, for
    training, FLAME and LPIPS); ``"faceworld"`` loads the face world's shipped generator, e4e, identity and
    attribute experts in their places (``arcface_path`` / ``deca_path`` name the identity / attribute expert
    files; the geometry model and the perceptual distance have none), see ``faceworld.py``;
    ``"faceworld_random"`` builds the same face-world classes with random weights (generator at ``size`` px,
    ``style_dim``, ``channel_max``, ``channel_base``); ``"tiny"`` builds small random stand-ins with the same
    interfaces (generator: the real class at ``size`` px, ``channel_max`` wide). ``hypernet_path`` initialises the
    hypernetwork from the released ``hypernetwork.pt`` (strict) or the shipped face-world file. Hypernetwork
    widths default to the official ones; ``shared_channels: null`` takes the generator's widest conv width and
    ``z_dim: null`` the shared width (the official 512 and 512 at 256 px).

    Curriculum: ``inversion_steps`` steps of inversion (target = source), then ``self_steps`` of
    self-reenactment (same video), then cross-reenactment (another identity; no pixel ground truth).
    ``cross_self_every = n >= 2`` makes every n-th step of the cross phase a self-reenactment step, so the pixel
    terms stay in the objective to the end (0: a pure cross phase; the paper gives no phase lengths or mix).
    Losses (weights ``lambda_*``): pixel L1 on [0, ``l1_value_range``], LPIPS on [-1, 1], identity
    ``1 - cos`` to the source, FLAME shape/eye/mouth against the ground-truth coefficients.
    """

    plain_weights_hint = "--model.hypernet_path (or the other --model.*_path options)"

    def __init__(
        self,
        encoders: str = "pretrained",
        size: int = 256,
        style_dim: int = 512,
        channel_max: int = 512,
        channel_base: int | None = None,
        tiny_seed: int = 0,
        generator_path: str | None = None,
        e4e_path: str | None = None,
        arcface_path: str | None = None,
        deca_path: str | None = None,
        flame_path: str | None = None,
        flame_landmarks_path: str | None = None,
        lpips_path: str | None = None,
        hypernet_path: str | None = None,
        pose_channels: int = 2048,
        feature_channels: int = 512,
        shared_channels: int | None = 512,
        shared_inner: int = 128,
        refine_inner: int = 256,
        head_channels: int = 512,
        z_dim: int | None = 512,
        shared_layers: list[int] | None = None,
        combine: str = "matmul",
        truncation: float = 0.7,
        mean_latent_samples: int = 4096,
        mean_latent_seed: int = 0,
        inversion_steps: int = 10_000,
        self_steps: int = 40_000,
        cross_self_every: int = 0,
        lambda_l1: float = 1.0,
        l1_value_range: float = 255.0,
        lambda_lpips: float = 10.0,
        lambda_id: float = 10.0,
        lambda_shape: float = 1.0,
        lambda_eye: float = 1.0,
        lambda_mouth: float = 1.0,
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        training_parts: bool = True,
    ) -> None:
        super().__init__()
        if cross_self_every == 1 or cross_self_every < 0:
            raise ValueError(f"cross_self_every must be 0 (pure cross phase) or at least 2, got {cross_self_every}")
        self.save_hyperparameters()
        if encoders == "tiny":
            parts = build_tiny_parts(size, style_dim, channel_max, feature_channels, pose_channels, tiny_seed)
        elif encoders in FACEWORLD_KINDS:
            if flame_path is not None or flame_landmarks_path is not None or lpips_path is not None:
                raise ValueError(
                    f"encoders={encoders!r}: the face world's geometry model and perceptual distance have no file; "
                    "drop flame_path / flame_landmarks_path / lpips_path"
                )
            parts = build_faceworld_parts(
                encoders,
                generator_path,
                e4e_path,
                arcface_path,
                deca_path,
                training_parts,
                size=size,
                style_dim=style_dim,
                channel_max=channel_max,
                channel_base=channel_base,
                seed=tiny_seed,
            )
        elif encoders == "pretrained":
            parts = build_pretrained_parts(
                generator_path,
                e4e_path,
                arcface_path,
                deca_path,
                flame_path,
                flame_landmarks_path,
                lpips_path,
                training_parts,
            )
        else:
            raise ValueError(
                f"encoders must be 'pretrained', 'tiny', 'faceworld' or 'faceworld_random', got {encoders!r}"
            )
        gen = parts["generator"]
        if gen.size != size:
            raise ValueError(f"generator is {gen.size} px but size={size}")
        # None: scaled from the generator as the official widths are (shared width = the widest convs, z = it)
        if shared_channels is None:
            shared_channels = max(max(s[0], s[1]) for s in gen.conv_weight_shapes())
        if z_dim is None:
            z_dim = shared_channels
        hypernet = HypernetworkBlocks(
            official_layer_table(gen.conv_weight_shapes()),
            pose_channels=pose_channels,
            feature_channels=feature_channels,
            shared_channels=shared_channels,
            shared_inner=shared_inner,
            refine_inner=refine_inner,
            head_channels=head_channels,
            z_dim=z_dim,
            combine=combine,
            shared_layers=shared_layers,
        )
        if hypernet_path is not None:
            load_hypernet_file(hypernet, hypernet_path)
        self.net = HyperReenactor(
            gen,
            hypernet,
            parts["app_encoder"],
            parts["pose_encoder"],
            parts.get("inverter"),
            truncation=truncation,
            trunc_latent=mean_latent(gen, mean_latent_samples, mean_latent_seed),
            landmarker=parts.get("landmarker"),
        )
        self.flame = parts.get("flame")
        self.lpips = parts.get("lpips")
        for m in [*self.net.frozen_modules().values(), self.flame, self.lpips]:
            if m is not None:
                _freeze(m)
        self.loss_weights = {
            "l1": lambda_l1,
            "lpips": lambda_lpips,
            "id": lambda_id,
            "shape": lambda_shape,
            "eye": lambda_eye,
            "mouth": lambda_mouth,
        }

    # ----------------------------------------------------------------------------------------- utilities
    def train(self, mode: bool = True) -> HyperReenactModule:
        """Only the hypernetwork switches to training mode; frozen networks stay in eval (BatchNorm, dropout)."""
        super().train(mode)
        for m in [*self.net.frozen_modules().values(), self.flame, self.lpips]:
            if m is not None:
                m.eval()
        return self

    def phase_at(self, step: int) -> str:
        """Curriculum phase of optimisation step ``step``: inversion, then self, then cross reenactment (with every
        ``cross_self_every``-th cross-phase step a self step when that is set)."""
        hp = self.hparams
        if step < hp.inversion_steps:
            return "inversion"
        cross_start = hp.inversion_steps + hp.self_steps
        if step < cross_start:
            return "self"
        every = hp.cross_self_every
        if every and (step - cross_start) % every == every - 1:
            return "self"
        return "cross"

    def configure_optimizers(self):
        return torch.optim.Adam(
            self.net.hypernet.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )

    def _source_code(self, batch: Mapping[str, Tensor]) -> Tensor:
        if "source_w" in batch:
            return batch["source_w"]
        with torch.no_grad():
            return self.net.invert(batch["source"])

    # ----------------------------------------------------------------------------------------- training
    def reenact_and_losses(self, batch: Mapping[str, Tensor], phase: str) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        """One curriculum step's forward: (total loss, loss terms, reenacted images)."""
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
        src, src_lm, src_box = batch["source"], batch["source_lm5"], batch["source_box"]
        key = {"inversion": "source", "self": "target", "cross": "cross"}[phase]
        tgt, tgt_lm, tgt_box = batch[key], batch[f"{key}_lm5"], batch[f"{key}_box"]
        w = self._source_code(batch)
        with torch.no_grad():
            src_id, f_app = self.net.app_encoder(src, src_lm)
            tgt_params, f_pose = self.net.pose_encoder(tgt, tgt_box)
            shape_params = tgt_params
            if phase == "cross":
                shape_params, _ = self.net.pose_encoder(src, src_box)
        image, _ = self.net.render(w, f_pose, f_app)
        # The output should sit where the target's face is: its landmarks and box align the output's crops.
        out_id, _ = self.net.app_encoder(image, tgt_lm)
        out_params, _ = self.net.pose_encoder(image, tgt_box)
        terms: dict[str, Tensor] = {"id": identity_loss(out_id, src_id)}
        if self.flame is not None:
            # shape of the identity (target in self-, source in cross-reenactment), target expression and pose
            gt = {"shape": shape_params["shape"], "exp": tgt_params["exp"], "pose": tgt_params["pose"]}
            terms.update(flame_shape_terms(self.flame, gt, out_params))
        if phase != "cross":
            terms["l1"] = pixel_l1(image, tgt, self.hparams.l1_value_range)
            if self.lpips is not None:
                terms["lpips"] = lpips_loss(self.lpips, image, tgt)
        return weighted_total(terms, self.loss_weights), terms, image

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        phase = self.phase_at(self.global_step)
        loss, terms, _ = self.reenact_and_losses(batch, phase)
        bs = batch["source"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        self.log("train/phase", float(PHASES.index(phase)), batch_size=bs)
        for k, v in terms.items():
            self.log(f"train/{k}", v, batch_size=bs)
        return loss

    def _eval_step(self, batch: Mapping[str, Tensor], stage: str) -> None:
        """Self-reenactment of the test split (first frame as source): L1 on [-1, 1] and identity cosine."""
        out = self.net(
            batch["source"], batch["source_lm5"], batch["target"], batch["target_box"], batch.get("source_w")
        )
        emb_t, _ = self.net.app_encoder(batch["target"], batch["target_lm5"])
        emb_o, _ = self.net.app_encoder(out["image"].clamp(-1, 1), batch["target_lm5"])
        bs = batch["source"].shape[0]
        self.log(f"{stage}/l1", (out["image"] - batch["target"]).abs().mean(), batch_size=bs)
        self.log(f"{stage}/csim", torch.cosine_similarity(emb_o, emb_t, dim=1).mean(), batch_size=bs)

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def configure_callbacks(self) -> list[Callback]:
        return [ReenactmentWriter()]

    def predict_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """Batch: ``source`` [B,3,S,S], ``source_lm5``, optional ``source_w``, ``target``, ``target_box`` ->
        ``image`` [B,3,S,S] in [-1, 1] (clamped), plus ``index`` passed through when present."""
        out = self.net(
            batch["source"], batch["source_lm5"], batch["target"], batch["target_box"], batch.get("source_w")
        )
        res = {"image": out["image"].clamp(-1, 1)}
        if "index" in batch:
            res["index"] = batch["index"]
        return res


class ReenactmentWriter(Callback):
    """Writes ``predict`` outputs: ``frames/%06d.png`` and ``reenacted.mp4`` at the driving frame rate, under the
    datamodule's ``predict_output`` (default: ``<run folder>/predictions``)."""

    def on_predict_start(self, trainer, pl_module) -> None:
        dm = trainer.datamodule
        out = getattr(dm.hparams, "predict_output", None) if dm is not None else None
        self.out = Path(out or Path(trainer.log_dir or ".") / "predictions")
        (self.out / "frames").mkdir(parents=True, exist_ok=True)
        self.count = 0

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        for i, arr in zip(outputs["index"].tolist(), to_uint8(outputs["image"])):
            Image.fromarray(arr).save(self.out / "frames" / f"{i:06d}.png")
            self.count += 1

    def on_predict_end(self, trainer, pl_module) -> None:
        from common.data.video import write_video

        dm = trainer.datamodule
        ds = getattr(dm, "predict_set", None)
        if ds is not None and self.count != ds.num_frames:
            raise RuntimeError(f"predict wrote {self.count} frames but the driving input has {ds.num_frames}")
        fps = getattr(dm.hparams, "predict_fps", None) or getattr(ds, "fps", None) or 25.0
        files = sorted((self.out / "frames").glob("*.png"))
        write_video(self.out / "reenacted.mp4", (np.asarray(Image.open(f).convert("RGB")) for f in files), fps)
        print(f"[hyperreenact] predict: {self.count} frames at {fps:g} fps -> {self.out}", flush=True)


def load_module(path: str | os.PathLike, map_location: str = "cpu") -> HyperReenactModule:
    """A trained module from a Lightning checkpoint (hyperparameters and all weights from the file), or from the
    shipped face-world file (``faceworld.export_hypernet``: hyperparameters, mean latent and the float16
    hypernetwork; the frozen networks come from their registry files)."""
    from common.face.checkpoint import load_checkpoint

    p = Path(path)
    if p.suffix == ".pt" and p.is_file() and is_shipped_file(load_checkpoint(p, "HyperReenact checkpoint")):
        ckpt = read_shipped(p)
        module = HyperReenactModule(**{**ckpt["hparams"], "hypernet_path": str(p)})
        module.net.trunc_latent.copy_(ckpt["trunc_latent"].reshape(module.net.trunc_latent.shape))
        return module.to(map_location).eval()
    return HyperReenactModule.load_from_checkpoint(path, map_location=map_location)
