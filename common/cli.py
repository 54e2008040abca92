"""The LightningCLI every project's ``main.py`` runs on.

``cli_main(Module, DataModule, project=..., monitor=...)`` gives each project the same behaviour:

* seeding (``--seed_everything``, default 0) and config saving that overwrites an existing run folder;
* default callbacks: ``last.ckpt`` plus the best checkpoint on the project's monitored metric,
  a learning-rate monitor and Lightning's rich progress bar;
* TensorBoard logging (CSV when TensorBoard is not installed) into a predictable run folder,
  ``<runs root>/<project>/<experiment>/version_<n>``, where the experiment is the stem of the last
  ``--config`` file (or ``default``) and the runs root is ``$PAPERLAB_RUNS`` or ``runs``; the folder is
  printed when the command starts and when it ends.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint, RichProgressBar
from lightning.pytorch.cli import LightningCLI

RUNS_ENV = "PAPERLAB_RUNS"


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
                ModelCheckpoint(
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
    """Run the CLI (``fit``/``validate``/``test``/``predict``); ``args`` replaces ``sys.argv[1:]`` in tests."""
    return PaperlabCLI(
        model_class,
        datamodule_class,
        project=project,
        monitor=monitor,
        mode=mode,
        args=list(args) if args is not None else None,
        **kwargs,
    )
