"""Preprocessing of real driving videos into the pre-cropped VoxCeleb format."""

from __future__ import annotations

import numpy as np
import pytest

from projects.hyperreenact.data import ReenactmentPairs, scan_split
from projects.hyperreenact.preprocess import VOX1_TEST_IDS, main, process_video_folder, read_split


def test_split_lists(tmp_path):
    assert len(VOX1_TEST_IDS) == 40 and read_split() == set(VOX1_TEST_IDS)
    f = tmp_path / "ids.txt"
    f.write_text("id1\nid2\n\n")
    assert read_split(test_ids=str(f)) == {"id1", "id2"}
    meta = tmp_path / "vox1_meta.csv"
    meta.write_text(
        "VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet\nid10001\tA\tm\tIndia\tdev\nid10270\tB\tm\tUSA\ttest\n"
    )
    assert read_split(meta=str(meta)) == {"id10270"}


def test_real_clips_to_one_fps_crops(shared_data, tmp_path):
    from common.data.video import iter_video, write_video

    ex = shared_data / "StelaBou_HyperReenact" / "inference_examples"
    frames = [fr for i, fr in zip(range(27), iter_video(ex / "target_video_1.mp4"))]
    for ident, vid in (("id10270", "ytA"), ("id10001", "ytB")):
        d = tmp_path / "videos" / ident / vid
        d.mkdir(parents=True)
        write_video(d / "00001.mp4", frames, fps=25.0)
    out = tmp_path / "out"
    totals = main(["--videos", str(tmp_path / "videos"), "--out", str(out), "--no-latents", "--size", "64"])
    # 27 frames at 25 fps, 1 kept per second: frames 0 and 25
    assert totals == {"videos": 2, "frames": 4, "skipped": 0}
    test = scan_split(out, "test")
    train = scan_split(out, "train")
    assert [v.identity for v in test] == ["id10270"] and [v.identity for v in train] == ["id10001"]
    v = test[0]
    assert [f.name for f in v.frames] == ["00001_000000.png", "00001_000025.png"]
    assert v.latents is None and v.lm5.shape == (2, 5, 2) and (v.lm5 > 0).all() and (v.lm5 < 64).all()
    # the pair sampler needs two identities: add a second training identity by copying
    import shutil

    shutil.copytree(out / "train" / "id10001", out / "train" / "id10002")
    ds = ReenactmentPairs(out, "train", image_size=64)
    item = ds[0]
    assert item["source"].shape == (3, 64, 64) and item["cross_lm5"].shape == (5, 2)


def test_cached_codes_and_errors(tmp_path):
    from projects.hyperreenact.inference import FaceCropper
    from projects.hyperreenact.model import TinyInverter

    with pytest.raises(ValueError, match="no video clips"):
        (tmp_path / "v").mkdir()
        process_video_folder(tmp_path / "v", tmp_path / "o", FaceCropper(32, "fixed"))
    from common.data.video import write_video

    rng = np.random.default_rng(0)
    write_video(tmp_path / "v" / "c.mp4", rng.integers(0, 255, (5, 32, 32, 3), dtype=np.uint8), fps=2.0)
    kept, skipped = process_video_folder(
        tmp_path / "v", tmp_path / "o", FaceCropper(32, "fixed"), fps=1.0, inverter=TinyInverter(10, 8)
    )
    assert (kept, skipped) == (3, 0)  # frames 0, 2, 4 of a 2 fps clip
    meta = np.load(tmp_path / "o" / "meta.npz")
    assert meta["latents"].shape == (3, 10, 8)
