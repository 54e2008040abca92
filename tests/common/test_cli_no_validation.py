"""A run without validation data (DFER-CLIP's default ``val_split: none``, its demo): no best checkpoint can exist,
so the CLI says so once and keeps ``last.ckpt``, instead of Lightning's "could not find the monitored key" warning
at every epoch end."""

import warnings

import torch
from lightning.pytorch import LightningDataModule, LightningModule
from torch.utils.data import DataLoader, TensorDataset

from common.cli import cli_main


class ToyModule(LightningModule):
    def __init__(self, lr: float = 0.1) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Linear(2, 1)

    def training_step(self, batch, _):
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def validation_step(self, batch, _):
        self.log("val/score", -torch.nn.functional.mse_loss(self.net(batch[0]), batch[1]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


class TrainOnlyData(LightningDataModule):
    """Training data only: ``val_dataloader`` returns no loader, as DFERDataModule does with ``val_split='none'``."""

    def __init__(self) -> None:
        super().__init__()
        x = torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
        self.ds = TensorDataset(x, x.sum(1, keepdim=True))

    def train_dataloader(self):
        return DataLoader(self.ds, batch_size=8)

    def val_dataloader(self):
        return []


def test_no_validation_keeps_last_and_says_so_once(tmp_path, capsys):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cli = cli_main(
            ToyModule,
            TrainOnlyData,
            project="toy",
            monitor="val/score",
            mode="max",
            args=["fit", "--trainer.max_epochs=3", "--trainer.enable_progress_bar=false"],
        )
    monitor_warnings = [str(w.message) for w in caught if "monitor" in str(w.message)]
    assert monitor_warnings == []
    out = capsys.readouterr().out
    assert out.count("no validation data: no best checkpoint on val/score (last.ckpt is kept)") == 1
    ckpts = sorted(p.name for p in (tmp_path / "runs" / "toy" / "default" / "version_0" / "checkpoints").iterdir())
    assert ckpts == ["last.ckpt"]
    assert cli.trainer.current_epoch == 3
