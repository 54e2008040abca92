"""The released-weights path with files in the official formats (random values, real classes, 256 px):
generator ``{'g_ema'}``, e4e ``{'e'}``, ArcFace plain state dict, DECA ``{'E_flame'}``, and a hypernetwork file
``{'state_dict': {'hypernet.*'}}`` at reduced head widths; then inference on the real driving video."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.slow


def test_released_formats_load_and_reenact_a_real_video(tmp_path, shared_data):
    from common.data.video import iter_video, video_info, write_video
    from common.face.deca import DECAEncoder
    from common.face.irse import Backbone
    from common.stylegan2.encoders import Encoder4Editing
    from common.stylegan2.generator import Generator
    from projects.hyperreenact.hypernet import HypernetworkBlocks, official_layer_table
    from projects.hyperreenact.inference import reenact
    from projects.hyperreenact.module import HyperReenactModule

    torch.manual_seed(0)
    files = {}
    gen = Generator(256, 512, 8, channel_multiplier=1)
    files["generator_path"] = tmp_path / "stylegan-voxceleb.pt"
    torch.save({"g_ema": gen.state_dict()}, files["generator_path"])
    files["e4e_path"] = tmp_path / "e4e-voxceleb.pt"
    torch.save({"e": Encoder4Editing(50, "ir_se", stylegan_size=256).state_dict()}, files["e4e_path"])
    files["arcface_path"] = tmp_path / "insight_face.pth"
    torch.save(Backbone(112, 50, 0.6, "ir_se").state_dict(), files["arcface_path"])
    files["deca_path"] = tmp_path / "deca_model.tar"
    torch.save({"E_flame": DECAEncoder().state_dict()}, files["deca_path"])
    widths = dict(shared_inner=8, refine_inner=8, head_channels=8, z_dim=8)
    hyper = HypernetworkBlocks(official_layer_table(gen.conv_weight_shapes()), **widths)
    files["hypernet_path"] = tmp_path / "hypernetwork.pt"
    torch.save({"state_dict": {f"hypernet.{k}": v for k, v in hyper.state_dict().items()}}, files["hypernet_path"])
    del gen

    m = HyperReenactModule(
        encoders="pretrained", training_parts=False, **{k: str(v) for k, v in files.items()}, **widths
    )
    for k, v in hyper.state_dict().items():
        assert torch.equal(m.net.hypernet.state_dict()[k], v), k
    assert m.net.generator.size == 256 and m.net.inverter.n_styles == 14
    ex = shared_data / "StelaBou_HyperReenact" / "inference_examples"
    frames = [fr for _, fr in zip(range(2), iter_video(ex / "target_video_1.mp4"))]
    clip = tmp_path / "clip.mp4"
    write_video(clip, frames, fps=25.0)
    res = reenact(m.net, ex / "source.png", clip, tmp_path / "out", save_grids=True, batch_size=2)
    n, fps, hw = video_info(res.video)
    assert (n, fps, hw) == (2, 25.0, (256, 256))
