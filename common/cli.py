"""The LightningCLI every project's ``main.py`` runs on.

``cli_main(Module, DataModule, project=..., monitor=...)`` gives each project the same behaviour:

* seeding (``--seed_everything``, default 0) and config saving that overwrites an existing run folder;
* default callbacks: ``last.ckpt`` plus the best checkpoint on the project's monitored metric,
  a learning-rate monitor and Lightning's rich progress bar;
* TensorBoard logging (CSV when TensorBoard is not installed) into a predictable run folder,
  ``<runs root>/<project>/<experiment>/version_<n>``, where the experiment is the stem of the last
  ``--config`` file (or ``default``) and the runs root is ``$PAPERLAB_RUNS`` or ``runs``; the folder is
  printed when the command starts and when it ends;
* checked checkpoints: ``--ckpt_path`` is checked right after parsing, before anything is built (readable, a
  Lightning checkpoint, of this project's module), and read through ``CheckedCheckpointIO`` (NaN/Inf refused);
  Lightning then takes the model's hyperparameters from the checkpoint over the config and the command line (an
  exact resume), and the CLI names every value of the user's that this replaces;
* user errors (a missing or broken file, bad data: ``common.errors``) print their message alone and exit with
  status 1; ``--debug`` (anywhere on the command line) or ``PAPERLAB_DEBUG=1`` shows the traceback.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint, RichProgressBar
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.plugins.io import TorchCheckpointIO

from common.checkpoint import check_finite, check_lightning_checkpoint, is_lightning_checkpoint, read_checkpoint
from common.errors import install_excepthook, pop_debug_flag

RUNS_ENV = "PAPERLAB_RUNS"

# Lightning warnings known to be harmless here, silenced so a demo's output is its progress bars and results:
# demos and tests pass the command line as ``args`` on purpose (cli_main's contract) while sys.argv holds the
# demo's own options; a data module without validation data (DFER-CLIP's ``val_split: none``) returns [] from
# ``val_dataloader`` (``_BestCheckpoint`` says once that only last.ckpt is kept); Lightning's pytree helper
# still uses a spec class newer torch deprecates (nothing a user can change).
warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended to run from within Python")
warnings.filterwarnings("ignore", message="Total length of `list` across ranks is zero")
warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")


def runs_root() -> Path:
    """Root folder of all run directories: ``$PAPERLAB_RUNS`` or ``./runs``."""
    return Path(os.environ.get(RUNS_ENV, "runs"))


def _experiment_name(config_paths: Sequence[Any] | None) -> str:
    if not config_paths:
        return "default"
    last = config_paths[-1]
    path = getattr(last, "absolute", None) or getattr(last, "relative", None) or str(last)
    return Path(str(path)).stem or "default"


LAST_NAME = "last"


def last_checkpoint(trainer) -> Path:
    """``last.ckpt`` of a run made through the CLI (written at the end of every training epoch)."""
    for cb in trainer.checkpoint_callbacks:
        if isinstance(cb, ModelCheckpoint) and cb.filename == LAST_NAME and cb.best_model_path:
            return Path(cb.best_model_path)
    raise FileNotFoundError("this trainer saved no last.ckpt (checkpointing off, or no training epoch ended)")


class CheckedCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint IO reading files with ``common.checkpoint.read_checkpoint`` (one message per
    broken file) and refusing NaN/Inf weights in Lightning checkpoints. Other files (``ddp_spawn`` hands the
    trained weights back as a plain state dict) are returned as read."""

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        if not isinstance(path, (str, os.PathLike)) or str(path).startswith(("http://", "https://")):
            return super().load_checkpoint(path, map_location=map_location, weights_only=weights_only)
        ckpt = read_checkpoint(path, "Lightning checkpoint", map_location=map_location or "cpu")
        if is_lightning_checkpoint(ckpt):
            check_finite(ckpt["state_dict"], path)
        return ckpt


class _BestCheckpoint(ModelCheckpoint):
    """The best checkpoint on the monitored validation metric.

    A run without validation data (e.g. DFER-CLIP's honest protocol, ``--data.val_split=none``) has no best
    epoch: Lightning's ModelCheckpoint would then warn at every epoch end that the metric is missing. This one
    says once that only ``last.ckpt`` is kept, and waits for the metric (it also works when the monitored key
    is a training metric)."""

    _told = False

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.monitor is not None and self.monitor not in trainer.callback_metrics and not _has_validation(trainer):
            if not self._told and trainer.is_global_zero:
                print(f"[paperlab] no validation data: no best checkpoint on {self.monitor} (last.ckpt is kept)")
            self._told = True
            return
        super().on_train_epoch_end(trainer, pl_module)


def _has_validation(trainer) -> bool:
    n = trainer.num_val_batches
    total = sum(n) if isinstance(n, (list, tuple)) else n
    return bool(total) and trainer.limit_val_batches != 0


class _PrintRunDir(Callback):
    """Prints the run folder at the start and the end of each command (rank 0 only)."""

    def _say(self, trainer, when: str) -> None:
        log_dir = trainer.log_dir  # a collective under DDP: every rank must ask
        if trainer.is_global_zero and log_dir is not None:
            print(f"[paperlab] {when}: run folder {Path(log_dir).resolve()}", flush=True)

    def on_fit_start(self, trainer, pl_module) -> None:
        self._say(trainer, "fit starts")

    def on_fit_end(self, trainer, pl_module) -> None:
        self._say(trainer, "fit done")

    def on_test_end(self, trainer, pl_module) -> None:
        self._say(trainer, "test done")

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.state.fn == "validate":
            self._say(trainer, "validate done")

    def on_predict_end(self, trainer, pl_module) -> None:
        self._say(trainer, "predict done")


def frozen_eval_modules(model: torch.nn.Module) -> tuple[int, list[str] | None]:
    """After ``model.train()``: how many modules are in eval mode, and the roots of those eval-mode subtrees when
    every root is a frozen evaluator (no parameter in it trains; a root without parameters or buffers holds no
    dropout or normalisation layer, so its mode changes nothing); ``None`` otherwise (an eval-mode part that trains,
    or a dropout left in eval mode by mistake). ``model``'s mode is restored."""
    was = model.training
    model.train()
    modes = {name: m.training for name, m in model.named_modules()}
    model.train(was)
    evals = [n for n, training in modes.items() if not training]
    roots = [n for n in evals if n and modes.get(n.rpartition(".")[0], True)]
    if "" in evals:
        return len(evals), None
    mode_dependent = (torch.nn.modules.dropout._DropoutNd, torch.nn.modules.batchnorm._NormBase)
    for root in roots:
        sub = model.get_submodule(root)
        params = list(sub.parameters())
        if any(p.requires_grad for p in params):
            return len(evals), None
        stateless = not params and not list(sub.buffers())
        if stateless and any(isinstance(m, mode_dependent) for m in sub.modules()):
            return len(evals), None  # e.g. a dropout left in eval mode: not a frozen network
    return len(evals), roots


class PaperlabCLI(LightningCLI):
    """LightningCLI with the workspace defaults (see the module docstring)."""

    def __init__(
        self,
        model_class: type[LightningModule] | None = None,
        datamodule_class: type[LightningDataModule] | None = None,
        *,
        project: str,
        monitor: str | None = None,
        mode: str = "max",
        extra_callbacks: Sequence[Callback] = (),
        **kwargs: Any,
    ) -> None:
        self.project = project
        callbacks: list[Callback] = []
        if monitor:
            callbacks.append(
                _BestCheckpoint(
                    monitor=monitor,
                    mode=mode,
                    filename="best-{epoch}-{step}",
                    auto_insert_metric_name=False,
                )
            )
        # Lightning rewrites `save_last` only when a top-k checkpoint is saved in the same step: with a monitored
        # metric that stops improving, last.ckpt would go stale and a resume would go back in time. This one
        # writes last.ckpt at the end of every training epoch (and of a run stopped by max_steps).
        callbacks += [
            ModelCheckpoint(
                filename=LAST_NAME, save_top_k=1, enable_version_counter=False, save_on_train_epoch_end=True
            ),
            LearningRateMonitor(logging_interval="step"),
            RichProgressBar(leave=True),
            _PrintRunDir(),
            *extra_callbacks,
        ]
        trainer_defaults = {"callbacks": callbacks, **kwargs.pop("trainer_defaults", {})}
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("seed_everything_default", 0)
        super().__init__(model_class, datamodule_class, trainer_defaults=trainer_defaults, **kwargs)

    def before_fit(self) -> None:
        """Silence Lightning's "module(s) in eval mode at the start of training" when every such module belongs to a
        frozen evaluator (StyleMask's and HyperReenact's generator, face networks and LPIPS, which their ``train()``
        keeps in eval mode on purpose: BatchNorm statistics and no dropout). Only that exact count is silenced; an
        eval-mode module that still trains, or any other count, keeps the warning."""
        n, roots = frozen_eval_modules(self.model)
        if n and roots is not None:
            warnings.filterwarnings("ignore", message=rf"Found {n} module\(s\) in eval mode at the start of training")

    def before_instantiate_classes(self) -> None:
        """Point the default logger at ``<runs>/<project>/<experiment>`` unless the user chose one."""
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        trainer_cfg = cfg.get("trainer")
        if trainer_cfg is None:
            return
        experiment = _experiment_name(cfg.get("config"))
        if trainer_cfg.get("default_root_dir") is None:
            # without a logger, checkpoints and the saved config land here instead of the working folder
            trainer_cfg["default_root_dir"] = str(runs_root() / self.project / experiment)
        if trainer_cfg.get("enable_checkpointing") is False:
            self.trainer_defaults["callbacks"] = [
                c for c in self.trainer_defaults["callbacks"] if not isinstance(c, ModelCheckpoint)
            ]
        if trainer_cfg.get("enable_progress_bar") is False:
            self.trainer_defaults["callbacks"] = [
                c for c in self.trainer_defaults["callbacks"] if not isinstance(c, RichProgressBar)
            ]
        if trainer_cfg.get("logger") is False:
            self.trainer_defaults["callbacks"] = [
                c for c in self.trainer_defaults["callbacks"] if not isinstance(c, LearningRateMonitor)
            ]
            return
        if trainer_cfg.get("logger") not in (None, True):
            return
        save_dir = str(runs_root() / self.project)
        if importlib.util.find_spec("tensorboard") is not None:
            logger_cls = "lightning.pytorch.loggers.TensorBoardLogger"
        else:
            logger_cls = "lightning.pytorch.loggers.CSVLogger"
        trainer_cfg["logger"] = {
            "class_path": logger_cls,
            "init_args": {"save_dir": save_dir, "name": experiment},
        }

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The Trainer, reading checkpoints through ``CheckedCheckpointIO`` unless another IO was configured."""
        trainer = super().instantiate_trainer(**kwargs)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = CheckedCheckpointIO()
        return trainer

    def _parse_ckpt_path(self) -> None:
        """Lightning's CLI reads ``--ckpt_path``'s hyperparameters into the config right after parsing (a plain
        ``torch.load``): check the file first, so that a broken file, a plain state dict or another project's
        checkpoint fails with one message before anything is built (tensor data is memory-mapped, not read)."""
        sub = self.config.get("subcommand")
        ckpt_path = self.config[sub].get("ckpt_path") if sub else None
        if ckpt_path is not None and str(ckpt_path) not in ("last", "best", "hpc", "registry"):
            if "://" not in str(ckpt_path):
                ckpt = read_checkpoint(ckpt_path, "Lightning checkpoint", mmap=True)
                model_class = self.model_class if isinstance(self.model_class, type) else None
                check_lightning_checkpoint(ckpt, ckpt_path, model_class)
        before = _model_options(self.config[sub]) if sub else {}
        super()._parse_ckpt_path()
        after = _model_options(self.config[sub]) if sub else {}
        replaced = {k: (v, after[k]) for k, v in before.items() if k in after and after[k] != v}
        if replaced:
            # Lightning gives the checkpoint's hyperparameters precedence over the config and the command line
            # (an exact resume), silently: say which of the user's values are not used.
            lines = "".join(f"\n  model.{k}: {mine!r} -> {theirs!r}" for k, (mine, theirs) in sorted(replaced.items()))
            print(
                f"[paperlab] {ckpt_path}: the run continues with the checkpoint's model hyperparameters, so these "
                f"values from the config or the command line are not used:{lines}\n"
                "  To train with other values, start a new run from the checkpoint's weights instead of resuming.",
                file=sys.stderr,
                flush=True,
            )


def _model_options(cfg: Any) -> dict[str, Any]:
    """The ``model`` section of a parsed subcommand config as ``{dotted key: value}`` (sequences as lists)."""
    model = cfg.get("model")
    if model is None:
        return {}
    return {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in model.items()}


def cli_main(
    model_class: type[LightningModule] | None,
    datamodule_class: type[LightningDataModule] | None,
    *,
    project: str,
    monitor: str | None = None,
    mode: str = "max",
    args: Sequence[str] | None = None,
    **kwargs: Any,
) -> PaperlabCLI:
    """Run the CLI (``fit``/``validate``/``test``/``predict``); ``args`` replaces ``sys.argv[1:]`` in tests.

    ``--debug`` anywhere in the arguments is taken out and sets ``PAPERLAB_DEBUG=1`` (tracebacks of user errors).
    """
    install_excepthook()
    if args is None:
        sys.argv[1:] = pop_debug_flag(sys.argv[1:])
    else:
        args = pop_debug_flag(list(args))
    return PaperlabCLI(
        model_class,
        datamodule_class,
        project=project,
        monitor=monitor,
        mode=mode,
        args=list(args) if args is not None else None,
        **kwargs,
    )
