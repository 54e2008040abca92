"""CGH end to end on the tiny config: fit, kNN test and linear probe from the checkpoint; configs parse."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from common.cli import cli_main, last_checkpoint
from common.nn.resnet import ResNetBackbone
from projects.cgh.data import DATASETS, CGHDataModule
from projects.cgh.linear import CGHLinearProbe, load_pretrained_backbone
from projects.cgh.linear_main import main as linear_main
from projects.cgh.main import main
from projects.cgh.module import CGHModule

CONFIGS = sorted(Path("projects/cgh/configs").glob("*.yaml"))


def test_fit_then_knn_and_linear_probe_from_checkpoint():
    torch.manual_seed(0)
    fit = main(["fit", "--config", "projects/cgh/configs/tiny.yaml"])
    ckpt = last_checkpoint(fit.trainer)
    assert ckpt.is_file()
    monitor_acc = float(fit.trainer.callback_metrics["knn/top1"])
    assert 0.0 <= monitor_acc <= 1.0
    assert int(fit.model.queue.ptr) == (2 * 16) % 64  # two steps of 16 teacher features enqueued
    # every run attaches the collapse monitor and logs the per-step relation signals
    metrics = fit.trainer.callback_metrics
    for name in ("backbone", "student_g", "teacher_h", "queue_g", "queue_h"):
        assert 1.0 <= float(metrics[f"collapse/{name}/erank"]) and f"collapse/{name}/mean_cos" in metrics
    assert 0.0 < float(metrics["train/rel_entropy_teacher_g"]) <= 1.0 and "train/queue_cos_h" in metrics

    # a reloaded module keeps queue and teacher (training state is in buffers/modules)
    reloaded = CGHModule.load_from_checkpoint(ckpt)
    torch.testing.assert_close(reloaded.queue.features("hyper"), fit.model.queue.features("hyper"))
    torch.testing.assert_close(reloaded.teacher.state_dict(), fit.model.teacher.state_dict())

    test = main(["test", "--config", "projects/cgh/configs/tiny.yaml", "--ckpt_path", str(ckpt)])
    # same weights, same memory/query sets and k/T as the monitor at the end of the last epoch
    assert float(test.trainer.callback_metrics["test/knn20_top1"]) == pytest.approx(monitor_acc)

    pretrained, _ = load_pretrained_backbone(ckpt)
    lin = linear_main(["fit", "--config", "projects/cgh/configs/tiny_linear.yaml", "--model.pretrained", str(ckpt)])
    after = lin.model.backbone.state_dict()
    assert pretrained.keys() == after.keys()
    for k, v in pretrained.items():  # weights and BN running statistics untouched
        torch.testing.assert_close(after[k], v, rtol=0, atol=0, msg=k)
    assert not lin.model.backbone.training
    m = lin.trainer.callback_metrics
    assert {"val/acc1", "val/best_acc1"} <= set(m)

    best = lin.trainer.checkpoint_callback.best_model_path
    probe = CGHLinearProbe.load_from_checkpoint(best)  # no pretraining file needed
    for k, v in pretrained.items():
        torch.testing.assert_close(probe.backbone.state_dict()[k], v, rtol=0, atol=0)
    res = linear_main(["test", "--config", "projects/cgh/configs/tiny_linear.yaml", "--ckpt_path", best])
    assert 0.0 <= float(res.trainer.callback_metrics["test/acc1"]) <= 1.0


def test_linear_probe_rejects_a_different_backbone(tmp_path):
    ckpt = tmp_path / "fake.ckpt"
    model = CGHModule(in_channels=1, width=8, mlp_hidden=16, global_dim=8, hyper_dim=8, queue_size=8)
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, ckpt)
    probe = CGHLinearProbe(in_channels=1, width=16)
    with pytest.raises(ValueError, match="differs from the probe"):
        probe.load_backbone(ckpt)
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        probe.load_backbone(tmp_path / "missing.ckpt")


def test_linear_probe_loads_an_official_checkpoint_layout(tmp_path):
    torch.manual_seed(0)
    src = ResNetBackbone("resnet18", cifar_stem=True, in_channels=1, width=8).state_dict()
    net = {f"module.encoder_q.{k}": v for k, v in src.items()}
    net["module.encoder_q.fc.0.weight"] = torch.randn(32, 64)  # the projection MLP: not part of the backbone
    net["module.encoder_k.conv1.weight"] = torch.randn(8, 1, 3, 3)
    torch.save({"epoch": 199, "net": net}, tmp_path / "official.pth.tar")
    probe = CGHLinearProbe(in_channels=1, width=8)
    probe.load_backbone(tmp_path / "official.pth.tar")
    for k, v in src.items():
        torch.testing.assert_close(probe.backbone.state_dict()[k], v, rtol=0, atol=0)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_every_config_parses(config):
    args = ["--config", str(config)]
    if config.stem == "demo_ressl":
        args = ["--config", "projects/cgh/configs/demo.yaml", *args]
    if "linear" in config.stem:
        cli = cli_main(CGHLinearProbe, CGHDataModule, project="cgh", monitor="val/acc1", args=args, run=False)
        assert isinstance(cli.model, CGHLinearProbe)
    else:
        # a small queue keeps the ImageNet configs cheap to instantiate; everything else as written
        cli = cli_main(CGHModule, CGHDataModule, project="cgh", args=[*args, "--model.queue_size=64"], run=False)
        assert isinstance(cli.model, CGHModule)
    assert cli.datamodule.hparams.dataset in DATASETS
