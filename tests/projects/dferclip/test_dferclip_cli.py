"""Configs parse; fit -> test --ckpt_path round trip on the tiny config; predict on frame folders and videos."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from common.data.synthetic_faces import write_dataset
from projects.dferclip.data import DFERDataModule, RawVideoDataset
from projects.dferclip.main import main
from projects.dferclip.module import DFERCLIPModule

CONFIGS = sorted(Path("projects/dferclip/configs").glob("*.yaml"))
TINY = "projects/dferclip/configs/tiny.yaml"


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_config_parses(config):
    # the paper configs build ViT-B/32 (~7 s each here): only dfew.yaml does, the others swap in the tiny CLIP
    small = [] if config.stem in ("dfew", "demo", "tiny") else ["--model.clip_arch=tiny"]
    cli = main(["--config", str(config), "--model.clip_weights=null", *small], run=False)
    assert isinstance(cli.model, DFERCLIPModule) and isinstance(cli.datamodule, DFERDataModule)
    assert cli.model.hparams.num_classes == cli.datamodule.num_classes


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("faces")
    return write_dataset(root, train_per_class=2, test_per_class=1, size=32, min_frames=3, max_frames=9, seed=1)


def _data_args(d):
    return ["--data.annotation_dir", str(d["annotation_dir"]), "--data.data_root", str(d["frames"])]


def test_fit_then_test_round_trip(tiny_data, tmp_path):
    torch.manual_seed(0)
    cli = main(["fit", "--config", TINY, *_data_args(tiny_data), "--data.val_split=holdout",
                "--data.val_fraction=0.5"])  # fmt: skip
    run_dir = Path(cli.trainer.log_dir)
    last = run_dir / "checkpoints" / "last.ckpt"
    assert last.is_file()
    assert (run_dir / "confusion" / "val_epoch0.png").is_file()
    expected = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)[0]
    cli2 = main(["test", "--config", TINY, *_data_args(tiny_data), "--ckpt_path", str(last)])
    got = cli2.trainer.callback_metrics
    assert got["test/war"].item() == pytest.approx(expected["test/war"]) and 0 <= got["test/uar"].item() <= 1
    assert got["test/uar"].item() == pytest.approx(expected["test/uar"])
    assert any((Path(cli2.trainer.log_dir) / "confusion").glob("test_epoch*.png"))
    reloaded = DFERCLIPModule.load_from_checkpoint(last)
    for k, v in cli.model.state_dict().items():
        assert torch.equal(reloaded.state_dict()[k], v), k


def test_official_protocol_validates_on_test_fold(tiny_data):
    dm = DFERDataModule(val_split="test", num_frames=4, image_size=32, num_workers=0,
                        annotation_dir=str(tiny_data["annotation_dir"]), data_root=str(tiny_data["frames"]))  # fmt: skip
    dm.setup("fit")
    assert dm.val_set is dm.test_set and len(dm.val_set) == 7 and len(dm.train_set) == 14


def test_predict_frame_folder_and_video(tiny_data, tmp_path, capsys):
    from common.data.video import write_video

    cli = main(["fit", "--config", TINY, *_data_args(tiny_data), "--trainer.max_epochs=1",
                "--trainer.limit_train_batches=1"])  # fmt: skip
    last = Path(cli.trainer.log_dir) / "checkpoints" / "last.ckpt"
    folder = tiny_data["frames"] / "00001"
    frames = [np.asarray(Image.open(p)) for p in sorted(folder.iterdir())]
    video = tmp_path / "clip.mp4"
    write_video(video, frames, fps=10)
    capsys.readouterr()
    cli = main(["predict", "--config", TINY, "--ckpt_path", str(last), "--data.predict_inputs", f"[{folder}, {video}]",
                "--data.detect_faces=false"])  # fmt: skip
    out = capsys.readouterr().out
    assert f"{folder}: " in out and f"{video}: " in out and "happiness=" in out
    preds = [p for batch in cli.trainer.predict_loop.predictions for p in batch]
    assert [p["input"] for p in preds] == [str(folder), str(video)]
    for p in preds:
        assert sum(p["probs"].values()) == pytest.approx(1.0, abs=1e-5)


def test_predict_crops_detected_faces(shared_data, tmp_path):
    src = shared_data / "StelaBou_HyperReenact" / "inference_examples" / "source.png"
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(2):
        Image.open(src).convert("RGB").save(folder / f"{i:05d}.png")
    with_faces = RawVideoDataset([folder], num_frames=2, image_size=32, detect_faces=True)[0][0]
    whole = RawVideoDataset([folder], num_frames=2, image_size=32, detect_faces=False)[0][0]
    assert with_faces.shape == whole.shape == (2, 3, 32, 32)
    assert not torch.allclose(with_faces, whole)
    with pytest.raises(FileNotFoundError, match="no video file or frame folder"):
        RawVideoDataset([tmp_path / "missing.mp4"])


def test_reproduce_stops_at_once_listing_missing_inputs(tmp_path, monkeypatch, capsys):
    from projects.dferclip import reproduce

    monkeypatch.chdir(tmp_path)  # no data/, no pretrained/ here
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[3]))
    assert reproduce.main([]) == 2
    out = capsys.readouterr().out
    assert "cannot start" in out and "ViT-B-32.pt" in out and "40d365715913c9da" in out
    for name in ("DFEW_set_1_train.txt", "FERV39K_train.txt", "MAFW_set_1_train.txt", "data/DFEW/clip_224x224"):
        assert name in out
    assert reproduce.main(["--released", "--datasets", "ferv39k"]) == 2
    out = capsys.readouterr().out
    assert "dferclip_ferv39k" in out and "ViT-B-32.pt" not in out


def test_resume_continues_epochs_and_schedule(tiny_data):
    args = ["--config", TINY, *_data_args(tiny_data), "--model.milestones=[1]"]
    first = main(["fit", *args, "--trainer.max_epochs=1"])
    last = Path(first.trainer.log_dir) / "checkpoints" / "last.ckpt"
    steps = first.trainer.global_step
    resumed = main(["fit", *args, "--trainer.max_epochs=2", "--ckpt_path", str(last)])
    assert resumed.trainer.current_epoch == 2 and resumed.trainer.global_step == 2 * steps
    opt = resumed.trainer.optimizers[0]
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1e-3, 1e-6, 1e-4])  # decayed once at epoch 1
    assert resumed.trainer.lr_scheduler_configs[0].scheduler.last_epoch == 2  # 1 if the schedule had restarted
