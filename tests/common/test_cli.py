"""The shared LightningCLI: run folders, default callbacks, config saving, seeding."""

import os
import subprocess
import sys
from pathlib import Path

import torch
from lightning.pytorch import LightningDataModule, LightningModule
from torch.utils.data import DataLoader, TensorDataset

from common.cli import cli_main


class ToyModule(LightningModule):
    def __init__(self, lr: float = 0.1, hidden: int = 4) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(torch.nn.Linear(2, hidden), torch.nn.Linear(hidden, 1))

    def training_step(self, batch, _):
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def validation_step(self, batch, _):
        x, y = batch
        self.log("val/score", -torch.nn.functional.mse_loss(self.net(x), y))

    def test_step(self, batch, _):
        x, y = batch
        self.log("test/mse", torch.nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


class ToyData(LightningDataModule):
    def __init__(self, n: int = 32) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        x = torch.randn(n, 2, generator=g)
        self.ds = TensorDataset(x, x.sum(1, keepdim=True))

    def train_dataloader(self):
        return DataLoader(self.ds, batch_size=8)

    def val_dataloader(self):
        return DataLoader(self.ds, batch_size=8)

    def test_dataloader(self):
        return DataLoader(self.ds, batch_size=8)


def _run(args):
    return cli_main(ToyModule, ToyData, project="toy", monitor="val/score", mode="max", args=args)


def test_fit_writes_predictable_run_folder_and_reruns(tmp_path, capsys):
    cfg = tmp_path / "myexp.yaml"
    cfg.write_text("model:\n  hidden: 3\ntrainer:\n  max_epochs: 2\n  enable_model_summary: false\n")
    cli = _run(["fit", "--config", str(cfg)])
    run = tmp_path / "runs" / "toy" / "myexp" / "version_0"
    assert cli.trainer.log_dir == str(run)
    assert (run / "config.yaml").is_file()
    ckpts = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert "last.ckpt" in ckpts and any(n.startswith("best-") for n in ckpts)
    out = capsys.readouterr().out
    assert f"run folder {run.resolve()}" in out and "fit done" in out
    # a second run gets the next version; the config of the first is not in the way
    _run(["fit", "--config", str(cfg)])
    assert (tmp_path / "runs" / "toy" / "myexp" / "version_1" / "config.yaml").is_file()
    # the checkpoint evaluates with no extra arguments
    loaded = ToyModule.load_from_checkpoint(run / "checkpoints" / "last.ckpt")
    assert loaded.hparams.hidden == 3
    cli = _run(["test", "--config", str(cfg), "--ckpt_path", str(run / "checkpoints" / "last.ckpt")])
    assert "test/mse" in cli.trainer.callback_metrics


def test_resume_names_the_options_the_checkpoint_replaces(tmp_path, capsys):
    cfg = tmp_path / "myexp.yaml"
    cfg.write_text("model:\n  hidden: 3\ntrainer:\n  max_epochs: 1\n  enable_model_summary: false\n")
    _run(["fit", "--config", str(cfg)])
    last = tmp_path / "runs" / "toy" / "myexp" / "version_0" / "checkpoints" / "last.ckpt"
    capsys.readouterr()
    # the same config: nothing to say
    _run(["fit", "--config", str(cfg), "--trainer.max_epochs=2", "--ckpt_path", str(last)])
    assert "not used" not in capsys.readouterr().err
    # a changed learning rate is not used by a resume (Lightning's precedence), and the CLI says so
    cli = _run(["fit", "--config", str(cfg), "--model.lr=0.5", "--trainer.max_epochs=2", "--ckpt_path", str(last)])
    err = capsys.readouterr().err
    assert cli.model.hparams.lr == 0.1
    assert str(last) in err and "model.lr: 0.5 -> 0.1" in err and "model.hidden" not in err


class WorseningModule(ToyModule):
    """Its monitored score only gets worse, so the best checkpoint stays at epoch 0."""

    def validation_step(self, batch, _):
        self.log("val/score", -float(self.current_epoch))


def test_last_checkpoint_is_the_last_epoch_even_when_the_metric_stops_improving(tmp_path):
    cli_main(WorseningModule, ToyData, project="toy", monitor="val/score", args=["fit", "--trainer.max_epochs=3"])
    ckpts = tmp_path / "runs" / "toy" / "default" / "version_0" / "checkpoints"
    assert torch.load(ckpts / "last.ckpt", weights_only=False)["epoch"] == 2
    (best,) = ckpts.glob("best-*.ckpt")
    assert best.name.startswith("best-0-")


def test_seed_makes_runs_identical(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["fit", "--trainer.max_epochs=1", "--trainer.logger=false", "--trainer.enable_checkpointing=false"]
    w1 = _run(args + ["--seed_everything=3"]).model.net[0].weight.clone()
    w2 = _run(args + ["--seed_everything=3"]).model.net[0].weight.clone()
    torch.testing.assert_close(w1, w2)
    # with no logger the saved config goes to the run folder, never to the working folder
    assert not (tmp_path / "config.yaml").exists()
    assert (tmp_path / "runs" / "toy" / "default" / "config.yaml").is_file()


def test_progress_bar_can_be_switched_off(tmp_path):
    cli = _run(["fit", "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false"])
    assert cli.trainer.progress_bar_callback is None


def test_two_process_ddp_fit_completes(tmp_path):
    """Rank-0-only collectives deadlock DDP: a 2-process CPU fit through the CLI must finish (in a subprocess,
    so that a hang fails the test instead of stalling the suite)."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from test_cli import _run;"
        "_run(['fit', '--trainer.max_epochs=1', '--trainer.accelerator=cpu', '--trainer.devices=2',"
        " '--trainer.strategy=ddp_spawn', '--trainer.enable_progress_bar=false'])"
    )
    # a rendezvous left in the environment by an earlier in-process DDP test must not leak into this one
    stale = {"MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK", "NODE_RANK"}
    env = {k: v for k, v in os.environ.items() if k not in stale}
    env.update(PAPERLAB_RUNS=str(tmp_path / "runs"), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-c", code, str(Path(__file__).parent)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "runs" / "toy" / "default" / "version_0"
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert proc.stdout.count("fit done") == 1  # rank 0 only


class _WithFrozen(torch.nn.Module):
    """A trainable part and a frozen evaluator kept in eval mode by ``train()`` (as StyleMask's and
    HyperReenact's modules keep their generator and face networks)."""

    def __init__(self, freeze: bool = True) -> None:
        super().__init__()
        self.head = torch.nn.Linear(4, 2)
        self.expert = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU())
        for p in self.expert.parameters():
            p.requires_grad_(not freeze)

    def train(self, mode: bool = True):
        super().train(mode)
        self.expert.eval()
        return self


def test_frozen_eval_modules_accepts_frozen_evaluators_only():
    from common.cli import frozen_eval_modules

    m = _WithFrozen()
    m.eval()
    assert frozen_eval_modules(m) == (4, ["expert"])  # the Sequential and its three children
    assert not m.training  # the caller's mode is restored
    # an eval-mode part that still trains: the warning must stay
    assert frozen_eval_modules(_WithFrozen(freeze=False)) == (4, None)
    # a parameterless module left in eval mode by mistake (nothing to freeze): the warning must stay
    plain = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5))
    plain.train = lambda mode=True: (torch.nn.Module.train(plain, mode), plain[1].eval())[0]
    assert frozen_eval_modules(plain) == (1, None)
    assert frozen_eval_modules(torch.nn.Linear(2, 2)) == (0, [])


class FrozenExpertModule(ToyModule):
    """ToyModule with a second network kept in eval mode by ``train()``: frozen, or (by mistake) still trainable."""

    def __init__(self, lr: float = 0.1, hidden: int = 4, freeze_expert: bool = True) -> None:
        super().__init__(lr, hidden)
        self.expert = torch.nn.Sequential(torch.nn.Linear(1, 1), torch.nn.Dropout(0.1))
        self.expert.requires_grad_(not freeze_expert)

    def train(self, mode: bool = True):
        super().train(mode)
        self.expert.eval()
        return self


def test_fit_silences_the_eval_mode_warning_only_for_frozen_networks(tmp_path, monkeypatch):
    import warnings

    monkeypatch.chdir(tmp_path)

    def eval_mode_warnings(freeze: bool) -> list[str]:
        args = ["fit", "--trainer.max_epochs=1", "--trainer.logger=false", "--trainer.enable_checkpointing=false"]
        args += ["--trainer.enable_progress_bar=false", f"--model.freeze_expert={str(freeze).lower()}"]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cli_main(FrozenExpertModule, ToyData, project="toy", args=args)
        return [str(w.message) for w in caught if "in eval mode at the start of training" in str(w.message)]

    assert eval_mode_warnings(freeze=True) == []
    assert len(eval_mode_warnings(freeze=False)) == 1  # an eval-mode part that trains: Lightning's warning stays
