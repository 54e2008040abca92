"""The face world's e4e: ``Encoder4Editing`` scaled to the face-world generator, its training, loading and
held-out evaluation.

Architecture (``encoders.Encoder4Editing``, keys as the released e4e): IR-SE body with four stride-2 stages, the
pyramid taps at the ends of stages 2-4 (c1 16x16, c2 8x8, c3 4x4 for a 64 px input: the released model's 1/4,
1/8, 1/16), ``w0`` from c3 broadcast to every W+ row plus per-row deltas (rows 1-2 from c3, 3-6 from p2, 7-9
from p1), ``latent_avg`` added (e4e's ``start_from_latent_avg``). Sizes: :data:`FACEWORLD_ARCH` (a much smaller
body and narrower style blocks than IR-SE-50's 24 units and 512 channels: the 64 px faces of a CPU-trained
generator), W+ rows and width from the generator (10 x ``style_dim`` at 64 px).

Training, two stages (:class:`Recipe`; why: ``common/stylegan2/README``-level notes in the root README):

1. *Regression on generated pairs* (``regression_steps``): ``w`` from the generator's mapping (style mixing with
   probability ``mixing``), ``x = G(w)``; the encoder regresses W+ (``latent_lambda`` x MSE / Var(w), so 1 means
   predicting the mean code whatever the generator's scale) plus the image terms below on ``G(E(x))``. Exact
   targets for every sample.
2. *Fine-tuning on real renders* (``finetune_steps``): train-split face-world renders, e4e's losses: pixel L2,
   the perceptual term (``FaceWorldPerceptual``, where e4e has LPIPS), the identity term ``1 - cos`` of
   ``FaceWorldIdentity`` embeddings (where e4e has ArcFace), e4e's delta regularisation, and optionally its latent
   discriminator (``w_discriminator_lambda``) with R1 and the W pool.

e4e's progressive training runs over both stages: only ``w0`` until ``progressive_start``, then one more delta
every ``progressive_step_every`` steps; the delta regularisation is on while the schedule runs (e4e's rule).

Files (``faceworld_e4e.pt``, registry ``faceworld_e4e``) use e4e's training-checkpoint layout: ``{'state_dict':
{'encoder.*'}, 'opts': {..., 'encoder_type': 'Encoder4Editing', 'start_from_latent_avg': True}, 'latent_avg':
[n_styles, style_dim]}``, weights in float16 (``load_e4e`` reads them too; the loader converts to float32).

    python -m common.stylegan2.faceworld_e4e train --out pretrained/faceworld/faceworld_e4e.pt
    python -m common.stylegan2.faceworld_e4e evaluate       # held-out PSNR, identity cosine, landmark error
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, autograd, nn

from common.data import faceworld as fw
from common.face.faceworld_experts import (
    FaceWorldAttributes,
    FaceWorldIdentity,
    FaceWorldPerceptual,
    attribute_crop,
    estimate_landmarks,
    load_faceworld_attributes,
    load_faceworld_identity,
)
from common.face.losses import identity_loss
from common.metrics.face import landmark_nme, landmark_pixel_error, psnr_metric
from common.stylegan2.checkpoints import CheckpointError, torch_load_checkpoint
from common.stylegan2.encoders import Encoder4Editing, load_e4e
from common.stylegan2.generator import Generator
from common.stylegan2.sample import load_any_generator
from common.weights import REGISTRY, SHIPPED_DIR, MissingWeightsError, resolve

__all__ = [
    "FACEWORLD_ARCH",
    "LatentCodesDiscriminator",
    "LatentCodesPool",
    "Recipe",
    "build_faceworld_e4e",
    "delta_regularization",
    "discriminator_loss",
    "encoder_adversarial_loss",
    "evaluate_inversion",
    "latent_loss",
    "load_faceworld_e4e",
    "progressive_stage",
    "r1_penalty",
    "sample_wplus",
    "save_faceworld_e4e",
    "train_faceworld_e4e",
]

# The face world's encoder sizes (IR-SE-50: units (3, 4, 14, 3), widths (64, 128, 256, 512), block width 512).
FACEWORLD_ARCH: dict = {"units": (1, 2, 3, 1), "widths": (24, 32, 64, 96), "block_width": 48}
# The face-world generator's layout (projects/stylegan2/configs/faceworld64.yaml), for the random stand-in.
FACEWORLD_GENERATOR: dict = {"size": 64, "style_dim": 512, "n_mlp": 8, "channel_max": 128, "channel_base": 2048}
FORMAT = "paperlab-faceworld-e4e"


# ------------------------------------------------------------------------------------------------ model
def build_faceworld_e4e(generator: Generator, **arch) -> Encoder4Editing:
    """An ``Encoder4Editing`` for ``generator``'s W+ (``n_latent`` rows of ``style_dim``) on ``generator.size`` px
    inputs, with :data:`FACEWORLD_ARCH` sizes (overridden by ``arch``) and ``latent_avg`` added."""
    kw = {**FACEWORLD_ARCH, **arch}
    return Encoder4Editing(
        stylegan_size=generator.size,
        style_dim=generator.style_dim,
        input_size=generator.size,
        add_latent_avg=True,
        **kw,
    )


class LatentCodesDiscriminator(nn.Module):
    """e4e's latent discriminator: ``n_mlp - 1`` x (Linear(D, D) + LeakyReLU(0.2)), then Linear(D, 1).

    ``forward(w [B, D]) -> [B, 1]`` logits (real = a code of the generator's mapping).
    """

    def __init__(self, style_dim: int, n_mlp: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(n_mlp - 1):
            layers += [nn.Linear(style_dim, style_dim), nn.LeakyReLU(0.2)]
        layers.append(nn.Linear(style_dim, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, w: Tensor) -> Tensor:
        return self.mlp(w)


class LatentCodesPool:
    """e4e's pool of past codes for the discriminator (CycleGAN's image pool applied to W codes).

    ``query(ws)``: ``ws [B, D]`` or ``[B, R, D]`` (then one random row per sample). While the pool holds fewer than
    ``pool_size`` codes, each code is stored and returned; afterwards, with probability 1/2 a random stored code is
    returned and replaced by the new one, else the new code is returned. ``pool_size=0`` returns ``ws`` unchanged.
    """

    def __init__(self, pool_size: int, generator: torch.Generator | None = None) -> None:
        self.pool_size = pool_size
        self.ws: list[Tensor] = []
        self.generator = generator

    def _rand(self, n: int | None = None) -> Tensor:
        return torch.rand(() if n is None else n, generator=self.generator)

    def query(self, ws: Tensor) -> Tensor:
        if self.pool_size == 0:
            return ws
        out = []
        for w in ws.detach():
            if w.ndim == 2:
                w = w[int(self._rand() * w.shape[0])]
            if len(self.ws) < self.pool_size:
                self.ws.append(w)
                out.append(w)
            elif self._rand() > 0.5:
                i = int(self._rand() * self.pool_size)
                out.append(self.ws[i])
                self.ws[i] = w
            else:
                out.append(w)
        return torch.stack(out)

    def state_dict(self) -> dict:
        return {"ws": list(self.ws)}

    def load_state_dict(self, state: dict) -> None:
        self.ws = list(state["ws"])


# ------------------------------------------------------------------------------------------------ losses
def latent_loss(w_hat: Tensor, w: Tensor) -> Tensor:
    """Regression term: mean squared error of W+ codes ``[B, R, D]`` (mean over every element)."""
    if w_hat.shape != w.shape:
        raise ValueError(f"latent_loss: shapes differ, {tuple(w_hat.shape)} vs {tuple(w.shape)}")
    return F.mse_loss(w_hat, w)


def delta_regularization(wplus: Tensor, stage: int, norm: int = 2) -> Tensor:
    """e4e's delta regularisation: ``sum_{i=1}^{stage-1} mean_b ||w_i - w_0||_norm`` for W+ ``[B, R, D]``.

    As e4e's coach, the sum runs over the deltas before the newest one of the progressive ``stage`` (the paper
    writes all deltas; the released training code leaves out the one being introduced). Scalar; 0 for stage <= 1.
    """
    total = wplus.new_zeros(())
    for i in range(1, stage):
        total = total + torch.linalg.vector_norm(wplus[:, i] - wplus[:, 0], ord=norm, dim=1).mean()
    return total


def discriminator_loss(real_pred: Tensor, fake_pred: Tensor) -> Tensor:
    """Latent discriminator's logistic loss: ``mean softplus(-real) + mean softplus(fake)``."""
    return F.softplus(-real_pred).mean() + F.softplus(fake_pred).mean()


def encoder_adversarial_loss(discriminator: nn.Module, wplus: Tensor, rows: Sequence[int]) -> Tensor:
    """The encoder's non-saturating term: ``mean over rows of mean_b softplus(-D(w_row))`` (e4e's ``loss_disc``)."""
    total = wplus.new_zeros(())
    for i in rows:
        total = total + F.softplus(-discriminator(wplus[:, i])).mean()
    return total / len(rows)


def r1_penalty(real_pred: Tensor, real_w: Tensor) -> Tensor:
    """R1: ``mean_b ||d sum(real_pred) / d real_w_b||^2`` (``real_w`` must require grad; the graph is kept)."""
    (grad,) = autograd.grad(real_pred.sum(), real_w, create_graph=True)
    return grad.pow(2).reshape(grad.shape[0], -1).sum(1).mean()


def progressive_stage(step: int, n_styles: int, start: int | None, every: int) -> int:
    """e4e's progressive stage at ``step``: the schedule ``[0, start, start + every, ...]`` (``n_styles`` entries)
    -> the index of the last entry <= step (rows 1..stage carry deltas). ``start=None``: every row from step 0."""
    if start is None:
        return n_styles - 1
    steps = [0] + [start + i * every for i in range(n_styles - 1)]
    return max(i for i, s in enumerate(steps) if s <= step)


# ------------------------------------------------------------------------------------------------ data
def sample_wplus(generator: Generator, n: int, mixing: float, rng: torch.Generator) -> Tensor:
    """``[n, n_latent, style_dim]`` W+ codes of the generator's mapping; with probability ``mixing`` a sample
    switches to a second ``w`` from a random row in ``1 .. n_latent - 1`` on (StyleGAN2's style mixing)."""
    d, rows = generator.style_dim, generator.n_latent
    device = generator.input.input.device
    with torch.no_grad():
        w1 = generator.mapping(torch.randn(n, d, generator=rng).to(device))
        w2 = generator.mapping(torch.randn(n, d, generator=rng).to(device))
    mix = torch.rand(n, generator=rng) < mixing
    cut = torch.randint(1, rows, (n,), generator=rng)
    cut = torch.where(mix, cut, torch.full_like(cut, rows)).to(device)
    second = torch.arange(rows, device=device)[None, :] >= cut[:, None]
    return torch.where(second[..., None], w2[:, None], w1[:, None])


def render_batch(split: str, n: int, rng: torch.Generator, size: int = 64) -> dict[str, Tensor]:
    """Renders of ``n`` random identities of ``split`` at random pose and expression (with their landmarks)."""
    ids = fw.SPLITS[split].start + torch.randint(len(fw.SPLITS[split]), (n,), generator=rng)
    ident = fw.identity_params(ids)
    pose, expr = fw.sample_pose(n, rng), fw.sample_expression(n, rng)
    return {
        "image": fw.render(ident, pose, expr, size),
        "landmarks": fw.landmarks(ident, pose, expr, size),
    }


# ------------------------------------------------------------------------------------------------ training
@dataclasses.dataclass
class Recipe:
    """Training settings (e4e's names where e4e has them; defaults: the face world's calibrated recipe)."""

    regression_steps: int = 2000
    finetune_steps: int = 2000
    batch_size: int = 8
    learning_rate: float = 3e-4  # e4e: 1e-4 with Ranger; Adam here (e4e's optim_name='adam')
    mixing: float = 0.5
    latent_lambda: float = 1.0
    regression_image_lambda: float = 1.0  # scales the image terms during stage 1
    l2_lambda: float = 1.0
    lpips_lambda: float = 0.8  # the FaceWorldPerceptual term
    id_lambda: float = 0.1
    landmark_lambda: float = 0.0  # expert's 68 points of the inversion vs of the input (mean pixel distance)
    expression_lambda: float = 0.0  # expert's expression coefficients of the inversion vs of the input
    delta_norm: int = 2
    delta_norm_lambda: float = 2e-4
    progressive_start: int | None = 400  # e4e: 20000 of 200000 steps, then one delta every 2000
    progressive_step_every: int = 40
    w_discriminator_lambda: float = 0.1
    w_discriminator_lr: float = 2e-5
    r1: float = 10.0
    d_reg_every: int = 16
    w_pool_size: int = 50
    seed: int = 0
    log_every: int = 25
    val_every: int = 500
    val_size: int = 64
    save_every: int = 250

    @property
    def total_steps(self) -> int:
        return self.regression_steps + self.finetune_steps


def _requires_grad(module: nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


def _latent_avg(generator: Generator, n: int = 100_000, seed: int = 0) -> Tensor:
    """e4e's ``latent_avg``: the generator's own (from its file) else the mean of ``n`` mapped z (pSp uses 1e5)."""
    if generator.latent_avg is not None:
        return generator.latent_avg.reshape(-1)[: generator.style_dim].float()
    g = torch.Generator().manual_seed(seed)
    chunks = [generator.mean_latent(10_000, g) for _ in range(max(1, n // 10_000))]
    return torch.cat(chunks).mean(0)


class _Trainer:
    """One e4e training run (both stages); see the module docstring."""

    def __init__(
        self,
        encoder: Encoder4Editing,
        generator: Generator,
        identity: FaceWorldIdentity,
        attributes: FaceWorldAttributes,
        recipe: Recipe,
        log: Callable[[str], None] = print,
    ) -> None:
        self.E, self.G, self.r, self.log = encoder, generator.eval(), recipe, log
        _requires_grad(self.G, False)
        self.identity = identity.freeze()
        self.attributes = attributes.freeze()
        self.perceptual = FaceWorldPerceptual(identity, self.attributes)
        self.rng = torch.Generator().manual_seed(recipe.seed)
        self.opt = torch.optim.Adam(self.E.parameters(), lr=recipe.learning_rate)
        self.D: LatentCodesDiscriminator | None = None
        if recipe.w_discriminator_lambda > 0:
            self.D = LatentCodesDiscriminator(generator.style_dim, 4)
            self.d_opt = torch.optim.Adam(self.D.parameters(), lr=recipe.w_discriminator_lr)
            self.real_pool = LatentCodesPool(recipe.w_pool_size, self.rng)
            self.fake_pool = LatentCodesPool(recipe.w_pool_size, self.rng)
        with torch.no_grad():  # Var(w) per element: the latent term's unit
            z = torch.randn(4096, generator.style_dim, generator=torch.Generator().manual_seed(recipe.seed))
            self.w_var = generator.mapping(z).var(0).mean().item()
        self.step = 0
        self.history: list[dict[str, float]] = []
        val_rng = torch.Generator().manual_seed(10_000 + recipe.seed)
        self.val = render_batch("val", recipe.val_size, val_rng, generator.size)

    # -------------------------------------------------------------- pieces
    def stage(self) -> int:
        r = self.r
        return progressive_stage(self.step, self.E.n_styles, r.progressive_start, r.progressive_step_every)

    def image_terms(self, y_hat: Tensor, y: Tensor) -> dict[str, Tensor]:
        r = self.r
        terms = {"l2": F.mse_loss(y_hat, y)}
        if r.lpips_lambda > 0:
            terms["lpips"] = self.perceptual(y_hat, y).mean()
        if r.id_lambda > 0:
            with torch.no_grad():
                target = self.identity.embed_images(y)
            terms["id"] = identity_loss(self.identity.embed_images(y_hat), target)
        if r.landmark_lambda > 0:
            with torch.no_grad():
                target = estimate_landmarks(self.attributes, y)
            terms["landmarks"] = (estimate_landmarks(self.attributes, y_hat) - target).norm(dim=-1).mean()
        if r.expression_lambda > 0:
            with torch.no_grad():
                target = self.attributes(attribute_crop(y))["exp"]
            terms["expression"] = F.smooth_l1_loss(self.attributes(attribute_crop(y_hat))["exp"], target, beta=0.05)
        return terms

    def weighted_image_loss(self, terms: dict[str, Tensor]) -> Tensor:
        r = self.r
        w = {"l2": r.l2_lambda, "lpips": r.lpips_lambda, "id": r.id_lambda, "landmarks": r.landmark_lambda,
             "expression": r.expression_lambda}  # fmt: skip
        return sum(w[k] * v for k, v in terms.items())

    def discriminator_step(self, x: Tensor, stage: int) -> dict[str, float]:
        """e4e's ``train_discriminator``: real = mapped z, fake = the encoder's codes of rows 0..stage (pooled)."""
        r, D = self.r, self.D
        _requires_grad(D, True)
        with torch.no_grad():
            z = torch.randn(x.shape[0], self.G.style_dim, generator=self.rng)
            real_w = self.G.mapping(z)
            # With latent_avg: e4e's coach feeds the encoder's codes without it here, which its authors confirmed
            # as an oversight (omertov/encoder4editing#19: the discriminator should see the codes with it).
            fake_w = self.E(x)[:, : stage + 1]
        real_w, fake_w = self.real_pool.query(real_w), self.fake_pool.query(fake_w)
        loss = discriminator_loss(D(real_w), D(fake_w))
        self.d_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.d_opt.step()
        out = {"d_loss": loss.item()}
        if self.step % r.d_reg_every == 0:
            real_w = real_w.detach().requires_grad_(True)
            real_pred = D(real_w)
            r1 = r1_penalty(real_pred, real_w)
            self.d_opt.zero_grad(set_to_none=True)
            (r.r1 / 2 * r1 * r.d_reg_every + 0 * real_pred[0]).sum().backward()
            self.d_opt.step()
            out["d_r1"] = r1.item()
        _requires_grad(D, False)
        return out

    def train_step(self) -> dict[str, float]:
        r = self.r
        stage = self.stage()
        self.E.progressive_stage = stage
        self.E.train()
        regression = self.step < r.regression_steps
        logs: dict[str, float] = {"stage": float(stage)}
        if regression:
            w_true = sample_wplus(self.G, r.batch_size, r.mixing, self.rng)
            with torch.no_grad():
                x = self.G.synthesis(w_true, noise="const").clamp(-1, 1)
        else:
            x = render_batch("train", r.batch_size, self.rng, self.G.size)["image"]
        if self.D is not None and not regression:
            logs.update(self.discriminator_step(x, stage))
        w_hat = self.E(x)
        loss = x.new_zeros(())
        if regression and r.latent_lambda > 0:
            lat = latent_loss(w_hat, w_true) / self.w_var
            logs["latent"] = lat.item()
            loss = loss + r.latent_lambda * lat
        image_scale = r.regression_image_lambda if regression else 1.0
        if image_scale > 0:
            terms = self.image_terms(self.G.synthesis(w_hat, noise="const"), x)
            logs.update({k: v.item() for k, v in terms.items()})
            loss = loss + image_scale * self.weighted_image_loss(terms)
        if r.progressive_start is not None and r.delta_norm_lambda > 0:
            delta = delta_regularization(w_hat, stage, r.delta_norm)
            logs["delta"] = delta.item()
            loss = loss + r.delta_norm_lambda * delta
        if self.D is not None and not regression:
            adv = encoder_adversarial_loss(self.D, w_hat, range(stage + 1))
            logs["adv"] = adv.item()
            loss = loss + r.w_discriminator_lambda * adv
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        logs["loss"] = loss.item()
        return logs

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """PSNR and identity cosine of the inversions of the fixed validation renders."""
        self.E.eval()
        x = self.val["image"]
        rec = torch.cat([self.G.synthesis(self.E(c), noise="const") for c in x.split(32)]).clamp(-1, 1)
        psnr = _psnr(rec, x).mean().item()
        cos = F.cosine_similarity(self.identity.embed_images(rec), self.identity.embed_images(x), dim=1)
        return {"val_psnr": psnr, "val_id_cos": cos.mean().item()}

    # -------------------------------------------------------------- resume state
    def state(self) -> dict:
        st = {
            "step": self.step,
            "encoder": self.E.state_dict(),
            "optimizer": self.opt.state_dict(),
            "rng": self.rng.get_state(),
            "history": self.history,
        }
        if self.D is not None:
            st.update(
                discriminator=self.D.state_dict(),
                d_optimizer=self.d_opt.state_dict(),
                real_pool=self.real_pool.state_dict(),
                fake_pool=self.fake_pool.state_dict(),
            )
        return st

    def load_state(self, st: dict) -> None:
        self.step = int(st["step"])
        self.E.load_state_dict(st["encoder"])
        self.opt.load_state_dict(st["optimizer"])
        self.rng.set_state(st["rng"])
        self.history = list(st["history"])
        if self.D is not None:
            self.D.load_state_dict(st["discriminator"])
            self.d_opt.load_state_dict(st["d_optimizer"])
            self.real_pool.load_state_dict(st["real_pool"])
            self.fake_pool.load_state_dict(st["fake_pool"])

    def run(self, state_path: Path | None = None) -> list[dict[str, float]]:
        r = self.r
        t0, t_last, s_last = time.time(), time.time(), self.step
        while self.step < r.total_steps:
            logs = self.train_step()
            self.step += 1
            logs["step"] = float(self.step)
            if self.step % r.val_every == 0 or self.step == r.total_steps:
                logs.update(self.validate())
            self.history.append(logs)
            if self.step % r.log_every == 0 or self.step == r.total_steps or "val_psnr" in logs:
                now = time.time()
                rate = (now - t_last) / max(1, self.step - s_last)
                t_last, s_last = now, self.step
                phase = "regression" if self.step <= r.regression_steps else "finetune"
                parts = " ".join(f"{k} {v:.4g}" for k, v in logs.items() if k not in ("step",))
                self.log(f"step {self.step:5d}/{r.total_steps} [{phase}] {parts} ({rate:.2f} s/step, {now - t0:.0f} s)")
            if state_path is not None and (self.step % r.save_every == 0 or self.step == r.total_steps):
                torch.save(self.state(), state_path)
        return self.history


def train_faceworld_e4e(
    generator: Generator,
    identity: FaceWorldIdentity,
    attributes: FaceWorldAttributes,
    recipe: Recipe | None = None,
    arch: dict | None = None,
    state_path: str | os.PathLike | None = None,
    resume: bool = False,
    log: Callable[[str], None] = print,
    init: Encoder4Editing | None = None,
) -> tuple[Encoder4Editing, list[dict[str, float]]]:
    """Train the face world's e4e on ``generator`` (frozen) with the experts as perceptual and identity terms.

    Returns the encoder (eval mode) and the per-step log. ``state_path``: where the training state is written
    every ``recipe.save_every`` steps; ``resume`` continues from it. ``init``: start from this encoder (its
    architecture and ``latent_avg``; ``arch`` must then be empty): a fine-tune.
    """
    recipe = recipe or Recipe()
    last = progressive_stage(recipe.total_steps - 1, generator.n_latent, recipe.progressive_start,
                             recipe.progressive_step_every)  # fmt: skip
    if last < generator.n_latent - 1:
        # The saved encoder applies every delta (e4e's Inference stage); untrained ones add noise.
        log(f"warning: the progressive schedule reaches stage {last} of {generator.n_latent - 1} in "
            f"{recipe.total_steps} steps; deltas {last + 1}..{generator.n_latent - 1} stay untrained")  # fmt: skip
    torch.manual_seed(recipe.seed)
    if init is not None:
        if arch:
            raise ValueError(f"train_faceworld_e4e: init fixes the architecture; got arch overrides {arch}")
        arch = {"units": tuple(init.units), "widths": tuple(init.widths), "block_width": init.block_width}
    encoder = build_faceworld_e4e(generator, **(arch or {}))
    if init is not None:  # a fresh (trainable) encoder holding the frozen one's weights
        encoder.load_state_dict(init.state_dict())
        encoder.set_latent_avg(init.latent_avg.clone())
    else:
        encoder.set_latent_avg(_latent_avg(generator, seed=recipe.seed))
    trainer = _Trainer(encoder, generator, identity, attributes, recipe, log)
    path = Path(state_path) if state_path is not None else None
    if resume:
        if path is None or not path.is_file():
            raise FileNotFoundError(f"--resume: no training state at {path}")
        trainer.load_state(torch_load_checkpoint(path))
        log(f"resumed from {path} at step {trainer.step}")
    history = trainer.run(path)
    encoder.progressive_stage = encoder.n_styles - 1
    return encoder.eval(), history


# ------------------------------------------------------------------------------------------------ files
def save_faceworld_e4e(
    encoder: Encoder4Editing, path: str | os.PathLike, opts: dict | None = None, metrics: dict | None = None
) -> None:
    """Write ``encoder`` in e4e's checkpoint layout, floating-point tensors as float16."""
    if encoder.latent_avg is None:
        raise ValueError("save_faceworld_e4e: the encoder has no latent_avg")
    sd = {
        f"encoder.{k}": (v.detach().half() if v.is_floating_point() else v.detach()).clone()
        for k, v in encoder.state_dict().items()
    }
    all_opts = {
        "format": FORMAT,
        "encoder_type": "Encoder4Editing",
        "start_from_latent_avg": True,
        "stylegan_size": 2 ** ((encoder.n_styles + 2) // 2),
        "input_size": encoder.input_size,
        "units": list(encoder.units),
        "widths": list(encoder.widths),
        "block_width": encoder.block_width,
        **(opts or {}),
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {"state_dict": sd, "opts": all_opts, "latent_avg": encoder.latent_avg.clone(), "metrics": metrics or {}}, path
    )


def load_faceworld_e4e(
    path: str | os.PathLike | None = None, generator: Generator | None = None, device: str | torch.device = "cpu"
) -> Encoder4Editing:
    """The face world's e4e (registry ``faceworld_e4e`` unless ``path``), float32, frozen, adding ``latent_avg``.

    ``generator``: when given, the encoder must produce its W+ (rows and width), else a ``CheckpointError``
    names the file.
    """
    p = resolve("faceworld_e4e", path)
    ckpt = torch_load_checkpoint(p)
    opts = ckpt.get("opts") if isinstance(ckpt, dict) else None
    if not isinstance(opts, dict) or opts.get("format") != FORMAT:
        raise CheckpointError(f"{p}: not a face-world e4e file (expected e4e's layout with opts.format={FORMAT!r})")
    enc = load_e4e(p, device=device, add_latent_avg=True).float()
    if generator is not None and (enc.n_styles, enc.style_dim) != (generator.n_latent, generator.style_dim):
        raise CheckpointError(
            f"{p}: the encoder gives W+ [{enc.n_styles}, {enc.style_dim}] but the generator takes "
            f"[{generator.n_latent}, {generator.style_dim}] (encoder trained for another generator?)"
        )
    return enc.freeze()


def generator_path(path: str | os.PathLike | None = None) -> Path:
    """The face-world generator's file: ``path``, else the registry's ``faceworld_generator``."""
    if path is not None or "faceworld_generator" in REGISTRY:
        return resolve("faceworld_generator", path) if path is None else Path(path)
    default = SHIPPED_DIR / "faceworld" / "faceworld_generator.pt"
    if not default.is_file():
        raise MissingWeightsError(
            f"missing pretrained file {default} (the face-world generator: python projects/stylegan2/main.py fit "
            f"--config projects/stylegan2/configs/faceworld64.yaml, then projects.stylegan2.export)"
        )
    return default


def random_generator(seed: int = 0, **overrides) -> Generator:
    """A randomly initialised stand-in with the face-world generator's layout (development and smoke runs)."""
    torch.manual_seed(seed)
    return Generator(**{**FACEWORLD_GENERATOR, **overrides}).eval()


# ------------------------------------------------------------------------------------------------ evaluation
def _psnr(x: Tensor, y: Tensor) -> Tensor:
    """Per-image PSNR ``[B]`` (dB) of images in [-1, 1], by the shared metric (``common.metrics.face``)."""
    return torch.stack([psnr_metric()(a[None], b[None]) for a, b in zip(x, y)])


@torch.no_grad()
def evaluate_inversion(
    encoder: nn.Module,
    generator: Generator,
    identity: FaceWorldIdentity,
    attributes: FaceWorldAttributes,
    n: int = 500,
    seed: int = 0,
    batch_size: int = 50,
) -> dict[str, dict[str, float]]:
    """Inversion quality on ``n`` held-out (test-split) renders (``FaceWorldDataset("test", seed=seed)``).

    Rows: ``inversion`` (``G(E(x))`` vs ``x``), ``mean_face`` (``G(latent_avg)``: the floor) and
    ``expert_on_input`` (landmarks only: the estimator on ``x`` itself, the metric's own error). Columns: PSNR
    (dB), identity cosine (``FaceWorldIdentity``), landmark error (``estimate_landmarks`` vs the true landmarks;
    pixels, and normalised by the interocular distance: the benchmark's ``landmark_pixel_error`` and
    ``landmark_nme`` of ``common.metrics.face``).
    """
    encoder.eval()
    ds = fw.FaceWorldDataset("test", size=generator.size, length=n, seed=seed)
    sums: dict[str, dict[str, list[Tensor]]] = {}

    def add(row: str, rec: Tensor, x: Tensor, lm: Tensor) -> None:
        est = estimate_landmarks(attributes, rec)
        cos = F.cosine_similarity(identity.embed_images(rec), identity.embed_images(x), dim=1)
        vals = {"psnr": _psnr(rec, x), "id_cos": cos, "landmark_px": landmark_pixel_error(est, lm)}
        vals["landmark_nme"] = landmark_nme(est, lm)
        for k, v in vals.items():
            sums.setdefault(row, {}).setdefault(k, []).append(v)

    la = getattr(encoder, "latent_avg", None)
    for start in range(0, n, batch_size):
        idx = list(range(start, min(n, start + batch_size)))
        p = ds.params(idx)
        x = fw.render(p["identity"], p["pose"], p["expression"], generator.size)
        lm = fw.landmarks(p["identity"], p["pose"], p["expression"], generator.size)
        add("inversion", generator.synthesis(encoder(x), noise="const").clamp(-1, 1), x, lm)
        if la is not None:
            mean = generator.synthesis(la[None].expand(len(idx), -1, -1), noise="const").clamp(-1, 1)
            add("mean_face", mean, x, lm)
        est = estimate_landmarks(attributes, x)
        sums.setdefault("expert_on_input", {}).setdefault("landmark_px", []).append(landmark_pixel_error(est, lm))
        sums["expert_on_input"].setdefault("landmark_nme", []).append(landmark_nme(est, lm))
    return {row: {k: torch.cat(v).mean().item() for k, v in cols.items()} for row, cols in sums.items()}


def format_metrics(metrics: dict[str, dict[str, float]]) -> str:
    """A table of :func:`evaluate_inversion`'s rows (``-`` where a row has no value)."""
    cols = (("psnr", "PSNR dB", ".2f"), ("id_cos", "id cos", ".3f"), ("landmark_px", "lm px", ".2f"),
            ("landmark_nme", "lm NME", ".3f"))  # fmt: skip
    rows = [f"{'':18s}" + "".join(f" {title:>8s}" for _, title, _ in cols)]
    for row, m in metrics.items():
        rows.append(f"{row:18s}" + "".join(f" {format(m[k], f) if k in m else '-':>8s}" for k, _, f in cols))
    return "\n".join(rows)


# ------------------------------------------------------------------------------------------------ command line
def _int_or_none(text: str) -> int | None:
    return None if text.lower() == "none" else int(text)


def _add_recipe_args(ap: argparse.ArgumentParser) -> None:
    kinds = {"int": int, "float": float, "int | None": _int_or_none}
    for f in dataclasses.fields(Recipe):
        ap.add_argument(
            f"--{f.name.replace('_', '-')}", dest=f.name, type=kinds[f.type], default=argparse.SUPPRESS,
            help=f"(default {f.default})",
        )  # fmt: skip


def _experts(args: argparse.Namespace) -> tuple[FaceWorldIdentity, FaceWorldAttributes]:
    if args.random_experts is not None:
        torch.manual_seed(args.random_experts)
        return FaceWorldIdentity().freeze(), FaceWorldAttributes().freeze()
    return load_faceworld_identity(args.identity), load_faceworld_attributes(args.attributes)


def _generator(args: argparse.Namespace) -> tuple[Generator, dict]:
    if args.random_generator is not None:
        return random_generator(args.random_generator), {"random_seed": args.random_generator, **FACEWORLD_GENERATOR}
    path = generator_path(args.generator)
    return load_any_generator(path), {"path": str(path)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Train or evaluate the face world's e4e (see the module docstring).")
    sub = ap.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="train the encoder and save it (e4e's checkpoint layout, float16)")
    ev = sub.add_parser("evaluate", help="held-out inversion quality of the registered (or given) encoder")
    for p in (tr, ev):
        p.add_argument(
            "--generator",
            default=None,
            help="generator file: rosinality .pt or a StyleGAN2 training run's "
            "Lightning .ckpt (g_ema) (default: registry faceworld_generator)",
        )
        p.add_argument("--random-generator", type=int, default=None, metavar="SEED",
                       help="use a random stand-in generator with the face-world layout (development)")  # fmt: skip
        p.add_argument("--identity", default=None, help="identity expert file (default: the registry's)")
        p.add_argument("--attributes", default=None, help="attribute expert file (default: the registry's)")
        p.add_argument("--random-experts", type=int, default=None, metavar="SEED",
                       help="random stand-in experts (development)")  # fmt: skip
        p.add_argument("--n", type=int, default=500, help="held-out renders to evaluate on")
    tr.add_argument("--out", required=True, help="output file (e.g. pretrained/faceworld/faceworld_e4e.pt)")
    tr.add_argument(
        "--state",
        default=None,
        help="training-state file, written every --save-every steps (default: runs/faceworld_e4e/<OUT name>.state.pt)",
    )
    tr.add_argument("--resume", action="store_true", help="continue from the training-state file")
    tr.add_argument("--init", default=None, help="fine-tune this face-world e4e file instead of starting afresh")
    tr.add_argument(
        "--units", type=int, nargs=4, default=None, help=f"body units per stage ({FACEWORLD_ARCH['units']})"
    )
    tr.add_argument("--widths", type=int, nargs=4, default=None, help=f"stage widths ({FACEWORLD_ARCH['widths']})")
    tr.add_argument(
        "--block-width", type=int, default=None, help=f"style-block width ({FACEWORLD_ARCH['block_width']})"
    )
    _add_recipe_args(tr)
    ev.add_argument("--encoder", default=None, help="encoder file (default: registry faceworld_e4e)")
    ev.add_argument("--seed", type=int, default=0, help="seed of the held-out renders")
    args = ap.parse_args(argv)

    generator, gen_info = _generator(args)
    identity, attributes = _experts(args)
    if args.command == "evaluate":
        encoder = load_faceworld_e4e(args.encoder, generator)
        metrics = evaluate_inversion(encoder, generator, identity, attributes, n=args.n, seed=args.seed)
        print(f"face-world e4e on {args.n} held-out (test-split) renders:\n{format_metrics(metrics)}")
        return
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(Recipe) if hasattr(args, f.name)}
    recipe = Recipe(**overrides)
    arch = {k: v for k, v in (("units", args.units), ("widths", args.widths), ("block_width", args.block_width))}
    arch = {k: tuple(v) if isinstance(v, list) else v for k, v in arch.items() if v is not None}
    out = Path(args.out)
    state = Path(args.state) if args.state else Path("runs") / "faceworld_e4e" / f"{out.stem}.state.pt"
    state.parent.mkdir(parents=True, exist_ok=True)
    print(f"recipe: {dataclasses.asdict(recipe)}\narch: { ({**FACEWORLD_ARCH, **arch}) }\ngenerator: {gen_info}")
    t0 = time.time()
    init = load_faceworld_e4e(args.init, generator) if args.init else None
    if init is not None and arch:
        ap.error("--init fixes the architecture: drop --units / --widths / --block-width")
    encoder, history = train_faceworld_e4e(generator, identity, attributes, recipe, arch, state, args.resume, init=init)
    minutes = (time.time() - t0) / 60
    metrics = evaluate_inversion(encoder, generator, identity, attributes, n=args.n)
    print(f"held-out inversion quality ({args.n} test-split renders):\n{format_metrics(metrics)}")
    opts = {"recipe": dataclasses.asdict(recipe), "generator": gen_info, "train_minutes": round(minutes, 1)}
    if args.init:
        opts["init"] = str(args.init)
    save_faceworld_e4e(encoder, out, opts, metrics)
    print(f"saved {out} ({out.stat().st_size / 1e6:.2f} MB, {minutes:.1f} min of training)")


if __name__ == "__main__":
    main()
