"""Tiny checkpoints for the web app's tests, built in seconds on CPU from the projects' tiny test configs.

Each is a Lightning checkpoint (or, for the generator, a rosinality-format file) written the way ``main.py fit``
writes them, so the app loads them through the same ``--ckpt TAB=PATH`` path a user's checkpoints take.
"""

from __future__ import annotations

from pathlib import Path

import torch
import yaml
from lightning.pytorch import LightningDataModule, LightningModule, Trainer

ROOT = Path(__file__).resolve().parents[3]


def _cfg(project: str, name: str = "tiny") -> dict:
    return yaml.safe_load((ROOT / "projects" / project / "configs" / f"{name}.yaml").read_text())


def _save(module: LightningModule, path: Path, datamodule: LightningDataModule | None = None) -> Path:
    """Write ``module`` (and the data module's hyperparameters) as a Lightning checkpoint, without training."""
    trainer = Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, max_epochs=0)
    trainer.strategy.connect(module)
    if datamodule is not None:
        trainer._data_connector.attach_datamodule(module, datamodule=datamodule)
    trainer.save_checkpoint(path)
    return path


def stylemask_ckpt(folder: Path) -> Path:
    from projects.stylemask.module import StyleMaskModule

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = StyleMaskModule(**_cfg("stylemask")["model"])
    return _save(module, folder / "stylemask.ckpt")


def hyperreenact_ckpt(folder: Path) -> Path:
    from projects.hyperreenact.module import HyperReenactModule

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = HyperReenactModule(**_cfg("hyperreenact")["model"])
    return _save(module, folder / "hyperreenact.ckpt")


def dferclip_ckpt(folder: Path) -> Path:
    from projects.dferclip.data import DFERDataModule
    from projects.dferclip.module import DFERCLIPModule

    cfg = _cfg("dferclip")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = DFERCLIPModule(**cfg["model"])
    dm = DFERDataModule(**{**cfg["data"], "annotation_dir": str(folder), "data_root": str(folder), "normalize": True})
    return _save(module, folder / "dferclip.ckpt", dm)


def generator_file(folder: Path) -> Path:
    from common.stylegan2.generator import Generator

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        g = Generator(32, 32, 2, 1, channel_max=32)
    path = folder / "generator.pt"
    torch.save({"g_ema": g.state_dict()}, path)
    return path


def maskcon_ckpt(folder: Path) -> Path:
    from projects.maskcon.data import MaskConDataModule
    from projects.maskcon.module import MaskConModule

    cfg = _cfg("maskcon")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = MaskConModule(**cfg["model"])
    dm = MaskConDataModule(**{**cfg["data"], "limit_test": 64})
    return _save(module, folder / "maskcon.ckpt", dm)


def all_ckpts(folder: Path) -> dict[str, Path]:
    """``{tab: file}`` for every tab of the app."""
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "stylemask": stylemask_ckpt(folder),
        "hyperreenact": hyperreenact_ckpt(folder),
        "dferclip": dferclip_ckpt(folder),
        "generator": generator_file(folder),
        "maskcon": maskcon_ckpt(folder),
    }
