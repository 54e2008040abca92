"""MaskCon end to end on the tiny digits config: fit, test from the checkpoint, load_from_checkpoint, exact resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback, Trainer

from common.cli import cli_main
from projects.maskcon.data import MaskConDataModule
from projects.maskcon.main import main
from projects.maskcon.module import MaskConModule, warmup_cosine

TINY = "projects/maskcon/configs/tiny.yaml"


def _metrics(trainer: Trainer, prefix: str) -> dict[str, float]:
    return {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(prefix)}


def test_fit_then_test_ckpt_and_load_from_checkpoint(tmp_path):
    torch.manual_seed(0)
    cli = main(["fit", "--config", TINY])
    trainer = cli.trainer
    model = cli.model
    assert model.queue_ready and model.queue.num_filled == model.hparams.queue_size
    assert (model.queue.labels >= 0).all()
    ckpt = Path(trainer.log_dir) / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    assert any(p.name.startswith("best-") for p in ckpt.parent.iterdir())
    assert torch.load(ckpt, weights_only=False)["global_step"] == trainer.global_step  # written after every epoch

    tested = main(["test", "--config", TINY, "--ckpt_path", str(ckpt)])
    m1 = _metrics(tested.trainer, "test/")
    assert set(m1) == {"test/recall@1", "test/recall@2", "test/recall@5"}
    assert 0.0 < m1["test/recall@1"] <= m1["test/recall@2"] <= m1["test/recall@5"] <= 1.0
    plot = Path(tested.trainer.log_dir) / "test_embeddings_tsne.png"
    assert plot.is_file() and plot.stat().st_size > 1000

    loaded = MaskConModule.load_from_checkpoint(ckpt)
    assert torch.equal(loaded.queue.features(), model.queue.features())
    dm = MaskConDataModule(**{k: v for k, v in cli.datamodule.hparams.items() if not k.startswith("_")})
    t2 = Trainer(
        accelerator="cpu",
        default_root_dir=tmp_path,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    res = t2.test(loaded, datamodule=dm, verbose=False)[0]
    for k, v in m1.items():
        assert res[k] == pytest.approx(v, abs=1e-7)
    # the last validation of the fit ran on the same split with the same weights
    assert _metrics(trainer, "val/")["val/recall@1"] == pytest.approx(m1["test/recall@1"], abs=1e-7)


class _Kill(Callback):
    """Saves ``last.ckpt`` after global step ``k`` (mid-epoch) and then dies, as a killed job would."""

    def __init__(self, k: int, path: Path) -> None:
        self.k, self.path = k, path

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.k:
            trainer.save_checkpoint(self.path)
            raise RuntimeError("killed")


def _fit(args: list[str], extra: list[Callback] = (), ckpt: Path | None = None) -> MaskConModule:
    cli = cli_main(
        MaskConModule, MaskConDataModule, project="maskcon", monitor="val/recall@1", args=["--config", TINY, *args],
        run=False,
    )  # fmt: skip
    cli.trainer.callbacks.extend(extra)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt)
    return cli.model


# mid-epoch 1, and at the end of epoch 0 (4 steps per epoch)
@pytest.mark.parametrize("kill_step", [6, pytest.param(4, marks=pytest.mark.slow)])
def test_resume_after_kill_matches_straight_run(tmp_path, kill_step):
    args = ["--trainer.max_epochs=3", "--model.plot_embeddings=false"]
    straight = _fit(args)
    last = tmp_path / "last.ckpt"
    with pytest.raises(RuntimeError, match="killed"):
        _fit(args, [_Kill(kill_step, last)])
    resumed = _fit(args, ckpt=last)
    s, r = straight.state_dict(), resumed.state_dict()
    assert s.keys() == r.keys()
    for key in s:
        assert torch.equal(s[key], r[key]), key
    assert int(resumed.queue.ptr) == int(straight.queue.ptr)


def test_queue_filled_from_real_keys_even_when_larger_than_the_data():
    model = _fit(["--trainer.max_steps=1", "--model.queue_size=80", "--data.limit_train=64"])
    assert model.queue_ready and model.queue.num_filled == 80
    assert (model.queue.labels >= 0).all()  # every row holds a real key with its coarse label
    assert int(model.queue.ptr) == (64 + 32 + 32) % 80  # init: a pass of 2 batches of 32 and 1 more; step: 1 batch


def test_warmup_cosine_schedule():
    assert warmup_cosine(0, 10, 100) == 0.0
    assert warmup_cosine(5, 10, 100) == pytest.approx(0.5)
    assert warmup_cosine(10, 10, 100) == pytest.approx(1.0)
    assert warmup_cosine(55, 10, 100) == pytest.approx(0.5)
    assert warmup_cosine(100, 10, 100) == pytest.approx(0.0, abs=1e-12)
