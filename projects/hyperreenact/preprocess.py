"""VoxCeleb1 videos -> the pre-cropped frame folders HyperReenact trains and evaluates on.

Input: the VoxCeleb1 video clips as ``<videos>/<identity>/<youtube id>/<clip>.mp4`` (e.g. downloaded and
trimmed with StelaBou/voxceleb_preprocessing). Each ``<identity>/<youtube id>`` is one "video": frames of all
its clips, so same-video pairs never mix two recordings. For every clip, frames are kept at ``--fps`` (1 per
second, the sibling ``preprocess_voxCeleb.py`` keeps every 25th frame), each is cropped as at inference (MTCNN
face box, HyperReenact's landmark-box crop to 256 px), and the five points and box are carried into the crop.
With e4e weights, the W+ codes of the crops are cached in ``meta.npz`` (``latents``).

Split: VoxCeleb1's official test identities are id10270-id10309; pass ``--test-ids FILE`` (one id per line) or
``--meta vox1_meta.csv`` (its ``Set`` column) to use another list.

    python -m projects.hyperreenact.preprocess --videos VOX1_VIDEOS --out data/voxceleb1_hyperreenact [--no-latents]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from projects.hyperreenact.frames import VIDEO_SUFFIXES, FaceCropper, to_tensor
from projects.hyperreenact.pretrained import load_voxceleb_e4e

VOX1_TEST_IDS = tuple(f"id{n}" for n in range(10270, 10310))


def read_split(test_ids: str | None = None, meta: str | None = None) -> set[str]:
    """Identities of the test split: a file of ids, ``vox1_meta.csv``'s ``Set == test`` rows, or the default."""
    if test_ids:
        ids = {line.strip() for line in Path(test_ids).read_text().splitlines() if line.strip()}
        if not ids:
            raise ValueError(f"{test_ids}: no identities")
        return ids
    if meta:
        with open(meta, newline="") as f:
            rows = list(csv.reader(f, delimiter="\t"))
        header = [h.strip().lower() for h in rows[0]]
        if "set" not in header or not any(h.startswith("voxceleb1 id") for h in header):
            raise ValueError(f"{meta}: expected tab-separated columns 'VoxCeleb1 ID' and 'Set', got {rows[0]}")
        i_id = next(i for i, h in enumerate(header) if h.startswith("voxceleb1 id"))
        i_set = header.index("set")
        return {r[i_id].strip() for r in rows[1:] if len(r) > i_set and r[i_set].strip() == "test"}
    return set(VOX1_TEST_IDS)


def process_video_folder(
    video_dir: Path,
    out_dir: Path,
    cropper: FaceCropper,
    fps: float = 1.0,
    inverter: torch.nn.Module | None = None,
    device: str = "cpu",
) -> tuple[int, int]:
    """Crop the kept frames of every clip under ``video_dir`` into ``out_dir``; returns (kept, skipped)."""
    from common.data.video import iter_video, video_info
    from common.face.detect import NoFaceError

    clips = sorted(p for p in video_dir.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    if not clips:
        raise ValueError(f"{video_dir}: no video clips ({', '.join(VIDEO_SUFFIXES)})")
    (out_dir / "frames").mkdir(parents=True, exist_ok=True)
    lm5s, boxes, crops, skipped = [], [], [], []
    for clip in clips:
        _, clip_fps, _ = video_info(clip)
        step = max(1, round(clip_fps / fps))
        for i, frame in enumerate(iter_video(clip)):
            if i % step:
                continue
            name = f"{clip.stem}_{i:06d}"
            try:
                face = cropper(frame, f"{clip}#frame{i}")
            except NoFaceError as err:
                skipped.append(str(err))
                continue
            Image.fromarray(face.image).save(out_dir / "frames" / f"{name}.png")
            lm5s.append(face.lm5)
            boxes.append(face.box)
            crops.append(face.image)
    if skipped:
        (out_dir / "skipped.txt").write_text("\n".join(skipped) + "\n")
    if not crops:
        (out_dir / "frames").rmdir()  # no empty video folders: the datamodule would reject them
        return 0, len(skipped)
    arrays = {"lm5": np.stack(lm5s).astype(np.float32), "boxes": np.stack(boxes).astype(np.float32)}
    if inverter is not None:
        codes = []
        with torch.no_grad():
            for k in range(0, len(crops), 16):
                x = torch.stack([to_tensor(c) for c in crops[k : k + 16]]).to(device)
                codes.append(inverter(x).cpu())
        arrays["latents"] = torch.cat(codes).numpy().astype(np.float32)
    np.savez(out_dir / "meta.npz", **arrays)
    return len(crops), len(skipped)


def main(argv: list[str] | None = None) -> dict[str, int]:
    p = argparse.ArgumentParser(description="VoxCeleb1 clips -> 1-fps 256 px crops, landmarks, e4e codes")
    p.add_argument("--videos", required=True, help="<videos>/<identity>/<youtube id>/<clip>.mp4")
    p.add_argument("--out", required=True, help="output root (<out>/{train,test}/<identity>/<video>/...)")
    p.add_argument("--test-ids", default=None, help="file with the test identities, one per line")
    p.add_argument("--meta", default=None, help="vox1_meta.csv (tab-separated, 'Set' column)")
    p.add_argument("--fps", type=float, default=1.0, help="frames kept per second")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--e4e", default=None, help="e4e-voxceleb.pt (default: registry path)")
    p.add_argument("--no-latents", action="store_true", help="do not cache e4e codes (training then inverts online)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = p.parse_args(argv)
    src = Path(a.videos)
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: no such folder")
    test = read_split(a.test_ids, a.meta)
    inverter = None
    if not a.no_latents:
        from common.weights import resolve

        inverter = load_voxceleb_e4e(resolve("hyperreenact_e4e_voxceleb", a.e4e)).to(a.device)
    cropper = FaceCropper(a.size, "detect", device=a.device)
    totals = {"videos": 0, "frames": 0, "skipped": 0}
    for id_dir in sorted(d for d in src.iterdir() if d.is_dir()):
        split = "test" if id_dir.name in test else "train"
        for vid in sorted(d for d in id_dir.iterdir() if d.is_dir()):
            kept, skipped = process_video_folder(
                vid, Path(a.out) / split / id_dir.name / vid.name, cropper, a.fps, inverter, a.device
            )
            totals["videos"] += 1
            totals["frames"] += kept
            totals["skipped"] += skipped
            if skipped:
                print(f"[hyperreenact] {vid}: {skipped} frames without a face (listed in skipped.txt)")
    print(
        f"[hyperreenact] {totals['videos']} videos, {totals['frames']} frames, {totals['skipped']} skipped -> {a.out}"
    )
    return totals


if __name__ == "__main__":
    main()
