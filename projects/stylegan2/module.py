"""StyleGAN2Module: rosinality's ``train.py`` recipe as a LightningModule with manual optimisation.

One training step is one iteration ``i`` of ``train.py`` (``i`` = ``trainer.global_step`` before the step; only
the discriminator's main update counts as a Lightning step, so ``max_steps`` is the number of iterations):

1. D: ``d_logistic_loss(D(x), D(G(z)))`` with G frozen; Adam step.
2. every ``d_reg_every`` iterations (``i % d_reg_every == 0``): lazy R1 on the reals,
   ``r1 / 2 * R1 * d_reg_every`` (+ ``0 * D(x)[0]`` so that every parameter has a gradient, as the official
   code); a second Adam step.
3. G: ``g_nonsaturating_loss(D(G(z)))`` with D frozen; Adam step.
4. every ``g_reg_every`` iterations: path-length regularisation on ``batch // path_batch_shrink`` samples,
   ``path_regularize * g_reg_every * penalty``; a second Adam step; the mean path length is a buffer.
5. ``g_ema <- lerp(g_ema, G, 1 - ema_decay)`` with ``ema_decay = 0.5 ** (ema_batch / (ema_kimg * 1000))``
   (rosinality: ``0.5 ** (32 / (10 * 1000))`` whatever the batch).

Latents: ``z ~ N(0, I)``; with probability ``mixing`` two latents and one crossover layer per batch (style mixing).
Adam ``lr * c``, betas ``(b1 ** c, b2 ** c)`` with ``c = k / (k + 1)`` for regularisation interval ``k`` (the lazy
regularisation correction). Optional DiffAugment on every image D sees (``augment: diffaugment``).

All randomness of an iteration comes from generators seeded with ``(seed, i, rank)``, so a resumed run draws what
a straight run would have drawn; under DDP each rank draws its own latents. Under DDP the gradients are
all-reduced (averaged) by this module after each backward (NVIDIA's scheme; Lightning's DDP reducer cannot serve
four backward passes per step), so G, D and ``g_ema`` stay identical on every rank; the path-length running mean
uses the mean over all ranks (the official code keeps one per rank).

Monitoring: a grid of ``g_ema`` samples from fixed latents every ``sample_every`` iterations
(``<run>/samples/NNNNNN.png`` and TensorBoard); at each validation the Fréchet distance between ``g_ema`` samples and
the validation images in a feature space (``fd_expert: faceworld_identity``, the face-world identity expert), FID
(torchmetrics, when the Inception weights of the registry are present, or ``fid: true``), and with ``pose_expert:
faceworld_attributes`` the head-pose spread of the samples: ``val/pose_spread_{yaw,pitch,roll}``, the standard
deviation of the attribute expert's angles over ``g_ema`` samples divided by that over the validation images (1 when
the samples vary their pose as much as the data; a generator that collapses to one pose goes to 0, which the
identity-space distance does not show).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist
from lightning.pytorch import LightningModule
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.strategies import ParallelStrategy
from torch import Tensor, nn

from common.cli import LAST_NAME
from common.distributed import is_distributed, rank, world_size
from common.stylegan2 import Discriminator, Generator
from projects.stylegan2.augment import diff_augment, parse_policy
from projects.stylegan2.loss import d_logistic_loss, d_r1_loss, g_nonsaturating_loss, g_path_regularize
from projects.stylegan2.metrics import FeatureMoments, frechet_distance

AUGMENTS = (None, "diffaugment")
FD_EXPERTS = (None, "faceworld_identity")
POSE_EXPERTS = (None, "faceworld_attributes")
POSE_NAMES = ("yaw", "pitch", "roll")


def requires_grad(module: nn.Module, flag: bool) -> None:
    """Set ``requires_grad`` of every parameter (rosinality's ``requires_grad``)."""
    for p in module.parameters():
        p.requires_grad_(flag)


@torch.no_grad()
def accumulate(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """``ema_p <- decay * ema_p + (1 - decay) * p`` for every parameter (rosinality's ``accumulate``; buffers kept)."""
    ema_params = [p for _, p in ema.named_parameters()]
    params = [p for _, p in model.named_parameters()]
    if len(ema_params) != len(params):
        raise ValueError("accumulate: the two modules have different parameter lists")
    torch._foreach_lerp_(ema_params, params, 1.0 - decay)


def ema_decay(ema_kimg: float, ema_batch: int) -> float:
    """Per-step EMA decay with a half-life of ``ema_kimg`` thousand images at ``ema_batch`` images per step."""
    return 0.5 ** (ema_batch / (ema_kimg * 1000)) if ema_kimg > 0 else 0.0


def _item_seed(*parts: int) -> int:
    s = 0
    for p in parts:
        s = (s * 1_000_003 + int(p) * 2_654_435_761 + 97_531) % (2**62)
    return s


class _IterationCheckpoint(ModelCheckpoint):
    """``last.ckpt`` every N iterations. It holds the state after the whole iteration (G, D, g_ema, optimisers,
    ``global_step`` and the loader position agree), which is what an exact resume needs; Lightning's warning about
    a "pre-optimization state" under manual optimisation does not apply and is silenced here."""

    def on_train_batch_end(self, *args, **kwargs) -> None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization")
            super().on_train_batch_end(*args, **kwargs)


class StyleGAN2Module(LightningModule):
    """StyleGAN2 training (rosinality's defaults); see the module docstring for the recipe.

    Args:
        size / style_dim / n_mlp / channel_multiplier / lr_mlp: the generator (rosinality names and defaults).
        channel_max / channel_base: width cap and NVIDIA-style width rule for G and D (see ``generator_channels``).
        lr / betas: Adam (0.002, (0, 0.99)) before the lazy-regularisation correction.
        r1 / d_reg_every: R1 weight (gamma) and interval (10, 16); ``d_reg_every: 0`` disables R1.
        path_regularize / g_reg_every / path_batch_shrink / path_decay: path-length weight, interval, batch
            shrink and running-mean decay (2, 4, 2, 0.01); ``g_reg_every: 0`` disables it.
        mixing: style-mixing probability (0.9).
        ema_kimg / ema_batch: g_ema half-life in thousands of images and the batch it is counted at (10, 32).
        augment / augment_policy: ``diffaugment`` with a policy (default off).
        init_from: a rosinality ``.pt`` (training checkpoint or ``g_ema`` file) to start from: g_ema, g (else g_ema)
            and d (else a fresh D); used only when a fit starts without ``--ckpt_path``.
        n_sample / sample_every: the sample grid (fixed latents) and its interval in iterations (0: never).
        fd_expert / fd_weights: feature extractor of the validation Fréchet distance (``faceworld_identity``) and
            its weights file (default: the registry's).
        fid / fid_weights: FID at validation (None: when the registry's Inception file is present).
        pose_expert / pose_weights: head-pose reader of the validation pose spread (``faceworld_attributes``) and its
            weights file (default: the registry's); None: off.
        checkpoint_every: write ``last.ckpt`` every N iterations (besides every epoch end; 0: epoch ends only).
        seed: seed of the per-iteration random draws and of the fixed sample latents.
    """

    def __init__(
        self,
        size: int = 256,
        style_dim: int = 512,
        n_mlp: int = 8,
        channel_multiplier: int = 2,
        channel_max: int = 512,
        channel_base: int | None = None,
        lr_mlp: float = 0.01,
        lr: float = 0.002,
        betas: Sequence[float] = (0.0, 0.99),
        r1: float = 10.0,
        d_reg_every: int = 16,
        path_regularize: float = 2.0,
        g_reg_every: int = 4,
        path_batch_shrink: int = 2,
        path_decay: float = 0.01,
        mixing: float = 0.9,
        ema_kimg: float = 10.0,
        ema_batch: int = 32,
        augment: str | None = None,
        augment_policy: str = "color,translation,cutout",
        init_from: str | None = None,
        n_sample: int = 64,
        sample_every: int = 100,
        fd_expert: str | None = None,
        fd_weights: str | None = None,
        fid: bool | None = None,
        fid_weights: str | None = None,
        pose_expert: str | None = None,
        pose_weights: str | None = None,
        checkpoint_every: int = 1000,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if augment not in AUGMENTS:
            raise ValueError(f"augment must be one of {AUGMENTS}, got {augment!r}")
        if fd_expert not in FD_EXPERTS:
            raise ValueError(f"fd_expert must be one of {FD_EXPERTS}, got {fd_expert!r}")
        if pose_expert not in POSE_EXPERTS:
            raise ValueError(f"pose_expert must be one of {POSE_EXPERTS}, got {pose_expert!r}")
        if len(betas) != 2:
            raise ValueError(f"betas must be two numbers, got {betas}")
        parse_policy(augment_policy)
        self.save_hyperparameters()
        self.automatic_optimization = False
        gkw = dict(style_dim=style_dim, n_mlp=n_mlp, channel_multiplier=channel_multiplier, lr_mlp=lr_mlp,
                   channel_max=channel_max, channel_base=channel_base)  # fmt: skip
        self.generator = Generator(size, **gkw)
        self.discriminator = Discriminator(
            size, channel_multiplier=channel_multiplier, channel_max=channel_max, channel_base=channel_base
        )
        self.g_ema = Generator(size, **gkw)
        self.g_ema.load_state_dict(self.generator.state_dict())
        self.g_ema.requires_grad_(False)  # (train mode: no layer behaves differently in eval)
        self.register_buffer("mean_path_length", torch.zeros(()))
        gen = torch.Generator().manual_seed(_item_seed(seed, 10**9))
        self.register_buffer(
            "sample_z", torch.randn(n_sample, style_dim, generator=gen, device="cpu"), persistent=False
        )
        self.ema_decay = ema_decay(ema_kimg, ema_batch)
        # Validation helpers live outside the module tree (not in checkpoints, not moved by DDP).
        self.__dict__["fd_embed"] = None  # images [B,3,H,W] in [-1,1] -> features [B,D]; see _feature_extractor
        self.__dict__["_fd_real"] = None
        self.__dict__["_fid"] = None
        self.__dict__["pose_of"] = None  # images [B,3,H,W] in [-1,1] -> angles [B,3] (degrees); see _pose_reader
        self.__dict__["_pose_real"] = None
        self._sample_dir: Path | None = None

    # ------------------------------------------------------------------ set-up
    def configure_optimizers(self):
        h = self.hparams

        def adam(params, every: int) -> torch.optim.Adam:
            c = every / (every + 1) if every > 0 else 1.0
            return torch.optim.Adam(params, lr=h.lr * c, betas=(h.betas[0] ** c, h.betas[1] ** c))

        return [adam(self.generator.parameters(), h.g_reg_every), adam(self.discriminator.parameters(), h.d_reg_every)]

    def configure_callbacks(self):
        # last.ckpt every `checkpoint_every` iterations as well as at epoch ends (replaces the CLI's last.ckpt
        # callback, which writes at epoch ends only; a GAN epoch can be long)
        if self._trainer is None or not self.trainer.checkpoint_callbacks or not self.hparams.checkpoint_every:
            return []
        kw = dict(filename=LAST_NAME, save_top_k=1, enable_version_counter=False)
        return [
            ModelCheckpoint(**kw, save_on_train_epoch_end=True),
            _IterationCheckpoint(**kw, every_n_train_steps=self.hparams.checkpoint_every),
        ]

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.hparams.init_from and self.trainer.ckpt_path is None:
            self.load_rosinality(self.hparams.init_from)

    def load_rosinality(self, path: str) -> None:
        """Start from a rosinality file: ``g_ema``; ``g`` (else g_ema), ``d`` and the mean path length when present;
        its ``g_optim``/``d_optim`` are loaded into the optimisers when training starts."""
        from common.stylegan2.checkpoints import CheckpointError, load_state_dict_checked, torch_load_checkpoint

        ckpt = torch_load_checkpoint(path)
        if not isinstance(ckpt, dict) or "g_ema" not in ckpt:
            found = list(ckpt)[:10] if isinstance(ckpt, dict) else type(ckpt).__name__
            raise CheckpointError(f"{path}: no 'g_ema' entry (found {found})")
        load_state_dict_checked(self.g_ema, ckpt["g_ema"], f"{path} [g_ema]")
        g_key = "g" if "g" in ckpt else "g_ema"
        load_state_dict_checked(self.generator, ckpt[g_key], f"{path} [{g_key}]")
        if "d" in ckpt:
            load_state_dict_checked(self.discriminator, ckpt["d"], f"{path} [d]")
        if isinstance(ckpt.get("mean_path_length"), Tensor):
            self.mean_path_length.copy_(ckpt["mean_path_length"])
        self._pending_optim = {k: ckpt[k] for k in ("g_optim", "d_optim") if isinstance(ckpt.get(k), dict)}

    def on_train_start(self) -> None:
        log_dir = self.trainer.log_dir  # a collective under DDP: every rank asks
        root = Path(log_dir) if log_dir is not None else Path(self.trainer.default_root_dir)
        self._sample_dir = root / "samples"
        pending = self.__dict__.pop("_pending_optim", None)
        if pending:
            for opt, key in zip(self.optimizers(), ("g_optim", "d_optim")):
                if key in pending:
                    opt.optimizer.load_state_dict(pending[key])

    # ------------------------------------------------------------------ random draws
    def _rngs(self, *key: int) -> tuple[torch.Generator, torch.Generator]:
        """(CPU generator for scalar decisions, generator on this device) seeded with ``(seed, *key, rank)``."""
        s = _item_seed(self.hparams.seed, *key, rank())
        cpu = torch.Generator().manual_seed(s)
        if self.device.type == "cpu":
            return cpu, cpu
        return cpu, torch.Generator(device=self.device).manual_seed(s)

    def _noise(self, g: Generator, n: int, gen: torch.Generator) -> list[Tensor]:
        return [
            torch.randn(n, 1, 2 ** ((i + 5) // 2), 2 ** ((i + 5) // 2), generator=gen, device=self.device)
            for i in range(g.num_layers)
        ]

    def generate(
        self, g: Generator, n: int, cpu: torch.Generator, dev: torch.Generator, return_latents: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """``n`` images from random latents with style mixing (rosinality's ``mixing_noise``) and random noise."""
        h = self.hparams
        mix = h.mixing > 0 and float(torch.rand((), generator=cpu)) < h.mixing
        z = torch.randn(2 if mix else 1, n, h.style_dim, generator=dev, device=self.device).unbind(0)
        inject = int(torch.randint(1, g.n_latent, (), generator=cpu)) if mix else None
        return g(list(z), inject_index=inject, noise=self._noise(g, n, dev), return_latents=return_latents)

    def _augment(self, x: Tensor, dev: torch.Generator) -> Tensor:
        if self.hparams.augment == "diffaugment":
            return diff_augment(x, self.hparams.augment_policy, dev)
        return x

    # ------------------------------------------------------------------ distributed
    def _no_ddp_reducer(self):
        strategy = self._trainer.strategy if self._trainer is not None else None
        return strategy.block_backward_sync() if isinstance(strategy, ParallelStrategy) else nullcontext()

    def _sync_grads(self, module: nn.Module) -> None:
        """Average the gradients of ``module`` over DDP ranks (one flat all-reduce)."""
        if not is_distributed():
            return
        params = [p for p in module.parameters() if p.grad is not None]
        if not params:
            return
        flat = torch.cat([p.grad.flatten() for p in params])
        dist.all_reduce(flat)
        flat /= world_size()
        for p, g in zip(params, flat.split([p.numel() for p in params])):
            p.grad.copy_(g.view_as(p.grad))

    @staticmethod
    def _rank_mean(x: Tensor) -> Tensor:
        if not is_distributed():
            return x
        x = x.clone()
        dist.all_reduce(x)
        return x / world_size()

    def _step(self, opt, loss: Tensor, module: nn.Module, counted: bool) -> None:
        """zero_grad, backward, DDP average, Adam step. ``opt``: a Lightning optimizer (only the ``counted`` step
        advances ``global_step``) or a plain one (no trainer: benchmarks, tests)."""
        opt.zero_grad(set_to_none=True)
        if self._trainer is not None:
            self.manual_backward(loss)
        else:
            loss.backward()
        self._sync_grads(module)
        inner = getattr(opt, "optimizer", None)
        if inner is None or counted:
            opt.step()
        else:  # the same update through the strategy (precision plugin included) without advancing global_step
            self.trainer.strategy.optimizer_step(inner, closure=lambda: None)

    # ------------------------------------------------------------------ training
    @staticmethod
    def images_of(batch) -> Tensor:
        """The images of a batch: a tensor, ``batch["image"]`` or ``batch[0]``."""
        if isinstance(batch, Tensor):
            return batch
        if isinstance(batch, dict):
            return batch["image"]
        return batch[0]

    def training_step(self, batch, batch_idx: int) -> None:
        opt_g, opt_d = self.optimizers()
        logs = self.train_iteration(self.images_of(batch), int(self.global_step), opt_g, opt_d)
        self.log_dict({f"train/{k}": v for k, v in logs.items()}, on_step=True, on_epoch=False)
        self.log("d", logs["d"], prog_bar=True, logger=False)
        self.log("g", logs["g"], prog_bar=True, logger=False)

    def train_iteration(self, real: Tensor, i: int, opt_g, opt_d) -> dict[str, Tensor]:
        """Iteration ``i`` of the recipe (module docstring) on the reals ``[B, 3, S, S]``; returns detached logs."""
        h = self.hparams
        n = real.shape[0]
        cpu, dev = self._rngs(i)
        logs: dict[str, Tensor] = {}
        with self._no_ddp_reducer():
            # 1. discriminator
            requires_grad(self.generator, False)
            requires_grad(self.discriminator, True)
            with torch.no_grad():
                fake, _ = self.generate(self.generator, n, cpu, dev)
            fake_pred = self.discriminator(self._augment(fake, dev))
            real_pred = self.discriminator(self._augment(real, dev))
            d_loss = d_logistic_loss(real_pred, fake_pred)
            self._step(opt_d, d_loss, self.discriminator, counted=True)
            logs.update(d=d_loss.detach(), real_score=real_pred.detach().mean(), fake_score=fake_pred.detach().mean())

            # 2. lazy R1
            if h.d_reg_every > 0 and i % h.d_reg_every == 0:
                real_r = real.detach().requires_grad_(True)
                pred = self.discriminator(self._augment(real_r, dev))
                r1 = d_r1_loss(pred, real_r)
                self._step(opt_d, h.r1 / 2 * r1 * h.d_reg_every + 0 * pred[0], self.discriminator, counted=False)
                logs["r1"] = r1.detach()

            # 3. generator
            requires_grad(self.generator, True)
            requires_grad(self.discriminator, False)
            fake, _ = self.generate(self.generator, n, cpu, dev)
            g_loss = g_nonsaturating_loss(self.discriminator(self._augment(fake, dev)))
            self._step(opt_g, g_loss, self.generator, counted=False)
            logs["g"] = g_loss.detach()

            # 4. lazy path-length regularisation
            if h.g_reg_every > 0 and i % h.g_reg_every == 0:
                pb = max(1, n // h.path_batch_shrink) if h.path_batch_shrink else n
                fake, latents = self.generate(self.generator, pb, cpu, dev, return_latents=True)
                penalty, new_mean, pl = g_path_regularize(
                    fake, latents, self.mean_path_length, h.path_decay,
                    noise=torch.randn(fake.shape, generator=dev, device=self.device), batch_mean=self._rank_mean,
                )  # fmt: skip
                loss = h.path_regularize * h.g_reg_every * penalty
                if h.path_batch_shrink:
                    loss = loss + 0 * fake[0, 0, 0, 0]
                self._step(opt_g, loss, self.generator, counted=False)
                self.mean_path_length.copy_(new_mean)
                logs.update(path=penalty.detach(), path_length=pl.detach().mean())
            requires_grad(self.discriminator, True)

            # 5. g_ema
            accumulate(self.g_ema, self.generator, self.ema_decay)
        logs["mean_path_length"] = self.mean_path_length.clone()
        return logs

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        every = self.hparams.sample_every
        if every and self.global_step % every == 0 and self.trainer.is_global_zero:
            self.save_samples()

    @torch.no_grad()
    def sample_grid(self) -> Tensor:
        """``g_ema`` images of the fixed latents ``sample_z`` with the constant noise: ``[n_sample, 3, S, S]``."""
        return self.g_ema([self.sample_z], randomize_noise=False)[0]

    def save_samples(self) -> Path | None:
        """Write the sample grid to ``<run>/samples/<iteration>.png`` (and TensorBoard); returns the file."""
        from torchvision.utils import make_grid, save_image

        images = self.sample_grid().clamp(-1, 1).add(1).div(2)
        grid = make_grid(images, nrow=max(1, int(math.sqrt(images.shape[0]))))
        path = None
        if self._sample_dir is not None:
            self._sample_dir.mkdir(parents=True, exist_ok=True)
            path = self._sample_dir / f"{self.global_step:06d}.png"
            save_image(grid, path)
        experiment = getattr(self.logger, "experiment", None)
        if hasattr(experiment, "add_image"):
            experiment.add_image("samples", grid, self.global_step)
        return path

    # ------------------------------------------------------------------ validation: Fréchet distance, pose spread
    def _validation_reader(self, attr: str, name: str | None, build: Callable[[], Callable], what: str):
        """The function cached in ``self.<attr>`` (set by tests, or built once by ``build`` when the expert ``name``
        is configured); a missing weights file warns once and switches that metric off for this process (the
        hparams stay as configured, so a resumed run tries again)."""
        off = f"_{attr}_off"
        if getattr(self, attr) is not None or name is None or self.__dict__.get(off):
            return getattr(self, attr)
        try:
            fn = build()
        except (ImportError, FileNotFoundError) as e:
            warnings.warn(f"stylegan2: no {name} expert, the validation {what} is off: {e}", stacklevel=3)
            self.__dict__[off] = True
            return None
        self.__dict__[attr] = fn
        return fn

    def _feature_extractor(self) -> Callable[[Tensor], Tensor] | None:
        def build() -> Callable[[Tensor], Tensor]:
            from common.face.faceworld_experts import load_faceworld_identity

            return load_faceworld_identity(self.hparams.fd_weights).to(self.device).eval().embed_images

        return self._validation_reader("fd_embed", self.hparams.fd_expert, build, "Fréchet distance")

    def _pose_reader(self) -> Callable[[Tensor], Tensor] | None:
        def build() -> Callable[[Tensor], Tensor]:
            from common.face.faceworld_experts import attribute_crop, load_faceworld_attributes

            expert = load_faceworld_attributes(self.hparams.pose_weights).to(self.device).eval()
            return lambda images: expert(attribute_crop(images))["angles"]

        return self._validation_reader("pose_of", self.hparams.pose_expert, build, "pose spread")

    def _fid_metric(self):
        h = self.hparams
        if self._fid is not None or h.fid is False or self.__dict__.get("_fid_off"):
            return self._fid
        from common.weights import MissingWeightsError, resolve

        try:
            resolve("fid_inception", h.fid_weights)
        except MissingWeightsError as e:
            if h.fid:
                raise
            warnings.warn(f"stylegan2: FID is off (no Inception weights): {str(e).splitlines()[0]}", stacklevel=2)
            self.__dict__["_fid_off"] = True
            return None
        from common.metrics.face import FID

        self.__dict__["_fid"] = FID(h.fid_weights, reset_real_features=False).to(self.device)
        return self._fid

    def on_validation_epoch_start(self) -> None:
        self._val_fake = FeatureMoments()
        self._val_real = FeatureMoments() if self._fd_real is None else None
        self._val_pose_fake = FeatureMoments()
        self._val_pose_real = FeatureMoments() if self._pose_real is None else None
        fid = self._fid_metric()
        if fid is not None:
            fid.reset()  # keeps the real features once they are complete (reset_real_features=False)

    def validation_step(self, batch, batch_idx: int) -> None:
        real = self.images_of(batch)
        n = real.shape[0]
        _, dev = self._rngs(-1, batch_idx)  # the same latents at every validation
        z = torch.randn(n, self.hparams.style_dim, generator=dev, device=self.device)
        fake = self.g_ema([z], noise=self._noise(self.g_ema, n, dev))[0]
        embed = self._feature_extractor()
        sanity = self.trainer.sanity_checking  # a few batches only: run the code, keep no statistics
        if embed is not None:
            feats = embed(fake)
            if not sanity:
                self._val_fake.update(feats)
                if self._val_real is not None:
                    self._val_real.update(embed(real))
        pose_of = self._pose_reader()
        if pose_of is not None and not sanity:
            self._val_pose_fake.update(pose_of(fake))
            if self._val_pose_real is not None:
                self._val_pose_real.update(pose_of(real))
        fid = self._fid
        if fid is not None and not sanity:
            fid.update(fake.clamp(-1, 1), real=False)
            if not self.__dict__.get("_fid_real_done"):
                fid.update(real, real=True)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        if self._val_fake.sum is not None:
            self._val_fake.all_reduce()
            if self._val_real is not None:
                self._val_real.all_reduce()
                self.__dict__["_fd_real"] = self._val_real.stats()
            mu_r, s_r = self._fd_real
            mu_f, s_f = self._val_fake.stats()
            self.log("val/fd_identity", frechet_distance(mu_f, s_f, mu_r, s_r))
        if self._val_pose_fake.sum is not None:
            self._val_pose_fake.all_reduce()
            if self._val_pose_real is not None:
                self._val_pose_real.all_reduce()
                self.__dict__["_pose_real"] = self._val_pose_real.stats()[1].diagonal().sqrt()
            spread = self._val_pose_fake.stats()[1].diagonal().sqrt() / self._pose_real
            for name, v in zip(POSE_NAMES, spread.tolist()):
                self.log(f"val/pose_spread_{name}", v)
        if self._fid is not None:
            self.__dict__["_fid_real_done"] = True
            self.log("val/fid", float(self._fid.compute()))

    # ------------------------------------------------------------------ export
    def rosinality_checkpoint(self) -> dict:
        """rosinality's training-checkpoint layout: ``g``, ``d``, ``g_ema``, ``g_optim``, ``d_optim``, ``args`` (plus
        ``mean_path_length``); optimiser states come from the attached trainer (None without one)."""
        from projects.stylegan2.export import rosinality_args

        opts = self.optimizers() if self._trainer is not None else None
        return {
            "g": self.generator.state_dict(),
            "d": self.discriminator.state_dict(),
            "g_ema": self.g_ema.state_dict(),
            "g_optim": opts[0].optimizer.state_dict() if opts else None,
            "d_optim": opts[1].optimizer.state_dict() if opts else None,
            "args": rosinality_args(self.hparams, int(self.global_step) if self._trainer is not None else 0),
            "mean_path_length": self.mean_path_length.clone(),
        }
