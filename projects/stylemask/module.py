"""StyleMask LightningModule: trains the per-layer mask networks against frozen generator, DECA and ArcFace.

One training step (official ``Trainer.train``, batched):
  1. z_s, z_t, z_t' ~ N(0, I) (from the datamodule); w = mean + 0.7 (mapping(z) - mean) with a stored mean latent;
     styles and images of all three in one generator call, 3D coefficients and identity embeddings of all
     three in one DECA call and one ArcFace call (no gradient).
  2. r = mix(s_s, s_t); with the recurrent cycle (default) also h1 = mix(s_s, s_t'), h2 = mix(r, s_t');
     the 3 (or 1) reenactments are rendered in one generator call and analysed in one DECA/ArcFace call.
  3. loss = terms(r; s, t) + terms(h1; s, t') + terms(h2; s, t') [+ LPIPS(r, I_s) + LPIPS(h1, h2)].
Only the mask networks have trainable parameters; generator, face networks, inverter and LPIPS are frozen and
stay in eval mode.

Validation/test: the official synthetic protocol on fixed pairs (CSIM to the source, pose error in degrees and
normalised expression error to the target), averaged over all pairs. Predict: real images, codes or a driving
video (see ``data.ReenactmentInputs`` and ``writer.ReenactmentWriter``).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import Tensor, nn

from common.checkpoint import CheckpointMixin
from projects.stylemask.faces import TinyInverter, build_face_analyzer
from projects.stylemask.loss import cosine_similarity, lpips_term, reenactment_loss
from projects.stylemask.metrics import (
    PairMean,
    expression_error,
    faceworld_expression_ranges,
    load_expression_ranges,
    pose_error,
)
from projects.stylemask.model import StyleMaskReenactor, truncate


def _freeze(module: nn.Module) -> nn.Module:
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def _resolve(name: str, path: str | None) -> Path:
    """``common.weights.resolve``; a given file is also accepted for an artifact not registered yet."""
    from common.weights import REGISTRY, resolve

    if name not in REGISTRY and path is not None and Path(path).is_file():
        return Path(path)
    return resolve(name, path)


class StyleMaskModule(CheckpointMixin, LightningModule):
    """StyleMask (Bounareli et al., FG 2023). Hyperparameters default to the official FFHQ-1024 training.

    Generator: ``generator_path`` (rosinality ``.pt``; None = the registry's ``generator_name`` location:
    ``stylegan2_ffhq_config_f``, or ``faceworld_generator`` for the face world) or ``random_generator=True`` with
    ``image_size``/``style_dim``/``n_mlp``/``channel_multiplier``/``channel_max``/``channel_base`` (tiny runs).
    Face networks: ``face_models="real"`` (ArcFace, DECA, FLAME files), ``"faceworld"`` (the face world's identity
    and attribute experts and its geometry model, through the same losses and metrics; ``arcface_path`` /
    ``deca_path`` then name the expert files; LPIPS becomes ``FaceWorldPerceptual``; expression ranges come from
    the world's samplers), ``"faceworld_random"`` (the same classes, random weights), ``"tiny"`` (random stand-ins)
    or ``"none"`` (inference only: reenacting needs only the generator, e4e and the masks).
    Inverter for real images: ``inverter="e4e"`` (``e4e_path``, else the registry's ``e4e_name``:
    ``e4e_ffhq_encode`` or ``faceworld_e4e``), ``"tiny"`` or ``"none"``.
    ``mask_net_path`` starts from an official-format mask-network file (e.g. the released one).
    ``per_image_analysis`` runs DECA and ArcFace one image at a time as the official code (benchmarks only).
    """

    plain_weights_hint = "--model.mask_net_path (or the other --model.*_path options)"

    def __init__(
        self,
        image_size: int = 1024,
        style_dim: int = 512,
        n_mlp: int = 8,
        channel_multiplier: int = 2,
        channel_max: int = 512,
        channel_base: int | None = None,
        generator_path: str | None = None,
        generator_name: str = "stylegan2_ffhq_config_f",
        random_generator: bool = False,
        num_layers_control: int | None = 12,
        mix_torgb: bool = False,
        face_models: str = "real",
        arcface_path: str | None = None,
        deca_path: str | None = None,
        flame_path: str | None = None,
        landmark_embedding_path: str | None = None,
        deca_box: str = "fixed",
        inverter: str = "e4e",
        e4e_path: str | None = None,
        e4e_name: str = "e4e_ffhq_encode",
        loss_size: int = 256,
        truncation: float = 0.7,
        predict_truncation: float = 0.7,
        mean_latent_samples: int = 4096,
        lambda_identity: float = 10.0,
        lambda_shape: float = 1.0,
        lambda_perceptual: float = 0.0,
        recurrent_cycle: bool = True,
        lr: float = 1e-4,
        weight_decay: float = 5e-4,
        mask_net_path: str | None = None,
        expression_ranges_path: str | None = None,
        output_size: int = 256,
        num_grid_pairs: int = 8,
        per_image_analysis: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self._file_backed: list[str] = []  # frozen submodules read from files: left out of checkpoints
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            generator = self._build_generator()
            self.reenactor = StyleMaskReenactor(generator, num_layers_control, mix_torgb)
            self.faces = (
                None
                if face_models == "none"
                else _freeze(
                    build_face_analyzer(
                        face_models, arcface_path, deca_path, flame_path, landmark_embedding_path, deca_box, seed
                    )
                )
            )
            if face_models not in ("tiny", "none", "faceworld_random"):
                self._file_backed.append("faces.")
            self.inverter = self._build_inverter()
            # the perceptual term serves training only: inference modules (face_models 'none') build none
            self.lpips = self._build_lpips() if lambda_perceptual > 0 and face_models != "none" else None
            g = torch.Generator().manual_seed(seed)
            mean = generator.mean_latent(mean_latent_samples, generator=g)
        _freeze(self.reenactor.generator)
        self.register_buffer("mean_latent", mean)
        if mask_net_path:
            self.reenactor.load_official_masknet(mask_net_path)
        if expression_ranges_path is None and face_models == "real":
            from common.weights import default_path

            if default_path("stylemask_ffhq_ranges").is_file():
                expression_ranges_path = str(default_path("stylemask_ffhq_ranges"))
        if expression_ranges_path:
            ranges = load_expression_ranges(expression_ranges_path)
        elif face_models.startswith("faceworld"):
            ranges = faceworld_expression_ranges()
        else:
            ranges = torch.zeros(0, 2)
        # Not persistent: rebuilt from the hyperparameters, so inference modules (face_models "none") load any run.
        self.register_buffer("expression_ranges", ranges, persistent=False)
        self.strict_loading = not self._file_backed
        self.metrics = nn.ModuleDict(
            {f"{stage}_{name}": PairMean() for stage in ("val", "test") for name in ("csim", "pose", "expression")}
        )

    # ------------------------------------------------------------------ building
    def _build_generator(self) -> nn.Module:
        from common.stylegan2.generator import Generator

        h = self.hparams
        if h.random_generator:
            return Generator(
                h.image_size,
                h.style_dim,
                h.n_mlp,
                h.channel_multiplier,
                channel_max=h.channel_max,
                channel_base=h.channel_base,
            )
        from common.stylegan2.checkpoints import load_generator

        g = load_generator(_resolve(h.generator_name, h.generator_path))
        if g.size != h.image_size or g.style_dim != h.style_dim:
            raise ValueError(
                f"{h.generator_path}: generator is {g.size} px / style_dim {g.style_dim}, config says "
                f"{h.image_size} px / {h.style_dim}"
            )
        self._file_backed.append("reenactor.generator.")
        return g

    def _build_inverter(self) -> nn.Module | None:
        h = self.hparams
        g = self.reenactor.generator
        if h.inverter == "none":
            return None
        if h.inverter == "tiny":
            return _freeze(TinyInverter(g.n_latent, g.style_dim))
        if h.inverter != "e4e":
            raise ValueError(f"inverter must be 'e4e', 'tiny' or 'none', got {h.inverter!r}")
        if h.e4e_path is None:
            return None  # built lazily in predict (training does not need it)
        return self._load_e4e()

    def _load_e4e(self) -> nn.Module:
        name = self.hparams.e4e_name
        path = _resolve(name, self.hparams.e4e_path)
        if name == "faceworld_e4e":
            from common.stylegan2.faceworld_e4e import load_faceworld_e4e

            enc = load_faceworld_e4e(path)
        else:
            from common.stylegan2.encoders import load_e4e

            enc = load_e4e(path)
        self._file_backed.append("inverter.")
        self.strict_loading = False
        return _freeze(enc)

    def _build_lpips(self) -> nn.Module:
        if self.hparams.face_models.startswith("faceworld"):
            from common.face.faceworld_experts import FaceWorldPerceptual

            # LPIPS has no offline weights for the face world: its formula over the experts' stage features, on
            # the same expert instances the identity and 3D terms use (frozen; gradients reach the images).
            if self.hparams.face_models == "faceworld":
                self._file_backed.append("lpips.")
            return _freeze(FaceWorldPerceptual(self.faces.identity_net, self.faces.deca))
        from common.face.lpips import LPIPS

        # LPIPS(AlexNet) on [-1, 1] inputs (checked by the wrapper); the trunk comes from the registry file (tiny
        # runs keep a random trunk). Frozen, but gradients flow through it to the generated images.
        wrapper = LPIPS("alex", random_backbone=self.hparams.face_models == "tiny")
        if self.hparams.face_models != "tiny":
            self._file_backed.append("lpips.")
        return _freeze(wrapper)

    def train(self, mode: bool = True) -> StyleMaskModule:
        """Only the mask networks switch to training mode; every frozen network stays in eval mode."""
        super().train(mode)
        for m in (self.reenactor.generator, self.faces, self.inverter, self.lpips):
            if m is not None:
                m.eval()
        return self

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)  # CheckpointMixin: records the module class
        sd = checkpoint.get("state_dict", {})
        for key in [k for k in sd if any(k.startswith(p) for p in self._file_backed)]:
            del sd[key]

    def configure_optimizers(self):
        return torch.optim.Adam(
            self.reenactor.mask_net.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )

    # ------------------------------------------------------------------ helpers
    @property
    def generator(self) -> nn.Module:
        return self.reenactor.generator

    def wplus_from_z(self, z: Tensor, psi: float | None = None) -> Tensor:
        """``z [B, style_dim] -> W+ [B, n_latent, style_dim]`` with truncation toward the stored mean latent."""
        psi = self.hparams.truncation if psi is None else psi
        w = truncate(self.generator.mapping(z), self.mean_latent, psi)
        return w[:, None].expand(-1, self.generator.n_latent, -1)

    def loss_view(self, images: Tensor) -> Tensor:
        """Images as the losses see them: average-pooled to ``loss_size`` (official: 1024 -> 256)."""
        s = self.hparams.loss_size
        return F.adaptive_avg_pool2d(images, s) if images.shape[-1] > s else images

    def _analyse(self, images: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """3D coefficients and identity embeddings of a batch: one DECA call and one ArcFace call."""
        if self.faces is None:
            raise RuntimeError(
                "face_models='none' builds no ArcFace/DECA: training and evaluation need 'real' or 'tiny'"
            )
        if not self.hparams.per_image_analysis:
            return self.faces.coefficients(images), self.faces.embed(images)
        parts = [(self.faces.coefficients(x[None]), self.faces.embed(x[None])) for x in images]
        coeffs = {k: torch.cat([c[k] for c, _ in parts]) for k in parts[0][0]}
        return coeffs, torch.cat([e for _, e in parts])

    @staticmethod
    def _split(d: dict[str, Tensor], n: int) -> list[dict[str, Tensor]]:
        parts = {k: v.split(n) for k, v in d.items()}
        return [{k: parts[k][i] for k in parts} for i in range(len(next(iter(parts.values()))))]

    def _generate(self, z: Tensor) -> tuple[Tensor, list[Tensor], Tensor]:
        """No-grad generation: ``(W+, styles, loss-view images)`` for a batch of z."""
        wplus = self.wplus_from_z(z)
        styles = self.reenactor.styles(wplus)
        images = self.loss_view(self.generator.synthesis_from_styles(styles, noise="const"))
        return wplus, styles, images

    # ------------------------------------------------------------------ training
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        h = self.hparams
        zs, zt = batch["z_source"], batch["z_target"]
        b = zs.shape[0]
        cycle = h.recurrent_cycle
        with torch.no_grad():
            z = torch.cat([zs, zt, batch["z_cycle"]] if cycle else [zs, zt])
            wplus, styles, images = self._generate(z)
            coeffs, emb = self._analyse(images)
        c = self._split(coeffs, b)
        st = [s.split(b) for s in styles]
        s_s, s_t = [x[0] for x in st], [x[1] for x in st]
        e_s = emb[:b]
        img_s = images[:b]
        mixed_r, masks = self.reenactor.reenact_styles(s_s, s_t)
        outs = [mixed_r]
        if cycle:
            s_c = [x[2] for x in st]
            outs.append(self.reenactor.reenact_styles(s_s, s_c)[0])
            outs.append(self.reenactor.reenact_styles(mixed_r, s_c)[0])
        n_out = len(outs)
        all_styles = [torch.cat([o[i] for o in outs]) for i in range(len(mixed_r))]
        out_images = self.loss_view(self.reenactor.render(all_styles, wplus[:b].repeat(n_out, 1, 1)))
        out_coeffs, out_emb = self._analyse(out_images)
        oc = self._split(out_coeffs, b)
        oe = out_emb.split(b)
        oi = out_images.split(b)

        targets = [c[1]] + ([c[2], c[2]] if cycle else [])
        total = img_s.new_zeros(())
        logs: dict[str, Tensor] = {}
        for name, tgt, rc, re in zip(("", "_cycle1", "_cycle2"), targets, oc, oe):
            loss, terms = reenactment_loss(
                self.faces.flame_fn, c[0], tgt, rc, e_s, re, h.lambda_shape, h.lambda_identity, self.faces.geometry_size
            )
            total = total + loss
            logs.update({f"train/loss_{k}{name}": v.detach() for k, v in terms.items()})
        if h.lambda_perceptual > 0:
            per = lpips_term(self.lpips, oi[0], img_s)
            if cycle:
                per = per + lpips_term(self.lpips, oi[1], oi[2])
            total = total + h.lambda_perceptual * per
            logs["train/loss_perceptual"] = h.lambda_perceptual * per.detach()
        m = torch.cat(masks, dim=1).detach()
        logs["train/mask_mean"] = m.mean()
        logs["train/mask_saturated"] = ((m < 0.1) | (m > 0.9)).float().mean()
        logs["train/loss"] = total.detach()
        self.log_dict(logs, prog_bar=False, batch_size=b)
        self.log("loss", total.detach(), prog_bar=True, logger=False, batch_size=b)
        return total

    # ------------------------------------------------------------------ evaluation
    def reenact_pairs(self, zs: Tensor, zt: Tensor) -> dict[str, Tensor]:
        """Official validation pairs: images (loss view) of source, target, reenactment and the per-pair metrics."""
        _, styles, images = self._generate(torch.cat([zs, zt]))
        b = zs.shape[0]
        s_s, s_t = [s[:b] for s in styles], [s[b:] for s in styles]
        mixed, _ = self.reenactor.reenact_styles(s_s, s_t)
        wplus_s = self.wplus_from_z(zs)
        img_r = self.loss_view(self.reenactor.render(mixed, wplus_s))
        coeffs, emb = self._analyse(torch.cat([images, img_r]))
        _, c_t, c_r = self._split(coeffs, b)
        e_s, _, e_r = emb.split(b)
        out = {
            "source": images[:b],
            "target": images[b:],
            "reenacted": img_r,
            "csim": cosine_similarity(e_r, e_s),
            "pose": pose_error(c_r["angles"], c_t["angles"]),
        }
        if self.expression_ranges.numel():
            out["expression"] = expression_error(
                c_r["exp"], c_r["pose"][:, 3], c_t["exp"], c_t["pose"][:, 3], self.expression_ranges
            )
        return out

    def _eval_step(self, batch: dict[str, Tensor], batch_idx: int, stage: str) -> None:
        out = self.reenact_pairs(batch["z_source"], batch["z_target"])
        b = batch["z_source"].shape[0]
        for name in ("csim", "pose", "expression"):
            if name in out:
                metric = self.metrics[f"{stage}_{name}"]
                metric.update(out[name])
                self.log(f"{stage}/{name}", metric, on_step=False, on_epoch=True, batch_size=b)
        if batch_idx == 0:
            self._save_grid(out, stage)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "test")

    def _save_grid(self, out: dict[str, Tensor], stage: str) -> None:
        if self.trainer is None or not self.trainer.is_global_zero or self.trainer.sanity_checking:
            return
        log_dir = self.trainer.log_dir or self.trainer.default_root_dir
        if log_dir is None:
            return
        from torchvision.utils import save_image

        n = min(self.hparams.num_grid_pairs, out["source"].shape[0])
        rows = torch.stack([out["source"][:n], out["target"][:n], out["reenacted"][:n]], dim=1).flatten(0, 1)
        path = Path(log_dir) / "grids" / f"{stage}_step{self.global_step:06d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image((rows.clamp(-1, 1) + 1) / 2, path, nrow=3)

    # ------------------------------------------------------------------ prediction
    def to_wplus(self, x: Tensor, kind: str) -> Tensor:
        """W+ of a predict input: an aligned image (inverted, as e4e), a z code, or a W+ code.

        Truncation ``predict_truncation`` (official: 0.7, also on inverted codes) applies to images and z;
        W+ codes given as files are used as they are (official: truncation 1 for ``.npy`` W+).
        """
        psi = self.hparams.predict_truncation
        if kind == "z":
            return self.wplus_from_z(x, psi)
        if kind == "wplus":
            return x
        if kind != "image":
            raise ValueError(f"unknown input kind {kind!r}")
        if self.inverter is None:
            if self.hparams.inverter == "e4e":
                self.inverter = self._load_e4e().to(self.device)
            else:
                raise ValueError("image inputs need an inverter (inverter: e4e or tiny)")
        return truncate(self.invert(x), self.mean_latent, psi)

    def invert(self, images: Tensor) -> Tensor:
        """W+ ``[B, n_latent, style_dim]`` of aligned images ``[B,3,H,W]`` in [-1,1] by the inverter (no truncation).

        Images are resized (bilinear, antialiased) to the inverter's ``input_size`` when it declares one.
        """
        size = getattr(self.inverter, "input_size", None)
        if size is not None and images.shape[-2:] != (size, size):
            images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        return self.inverter(images)

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        """Reenact each target with the source: images ``[B,3,output_size,output_size]`` in [-1,1] + metadata."""
        src, tgt = batch["source"], batch["target"]
        n = tgt.shape[0]
        # one source per call (repeated in the batch): invert and render it once
        wp_s = self.to_wplus(src[:1], batch["source_kind"][0]).expand(n, -1, -1)
        wp_t = self.to_wplus(tgt, batch["target_kind"][0])
        img_r, _, _ = self.reenactor(wp_s, wp_t)
        size = self.hparams.output_size
        rec_s = self.generator.synthesis(wp_s[:1], noise="const").expand(n, -1, -1, -1)
        rec_t = self.generator.synthesis(wp_t, noise="const")

        def fit(x: Tensor) -> Tensor:
            return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True) if x.shape[-1] != size else x

        return {
            "reenacted": fit(img_r).clamp(-1, 1),
            "source": fit(rec_s).clamp(-1, 1),
            "target": fit(rec_t).clamp(-1, 1),
            "target_input": fit(tgt).clamp(-1, 1) if batch["target_kind"][0] == "image" else None,
            "frame": batch["frame"],
            "name": batch["name"],
        }
