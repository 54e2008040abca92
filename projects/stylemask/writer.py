"""Writes StyleMask predictions: one PNG per target (optionally a source|target|reenacted grid), or, for a
driving video, an output video at the driving video's frame rate, streamed frame by frame (no cap)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch import Tensor


def to_uint8(x: Tensor) -> np.ndarray:
    """``[3,H,W]`` in [-1,1] -> ``uint8 [H,W,3]``."""
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()


class _VideoStream:
    """PyAV writer fed one frame at a time (H.264, MPEG-4 fallback)."""

    def __init__(self, path: Path, fps: float, width: int, height: int) -> None:
        import av

        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.av = path, av
        self.container = av.open(str(path), mode="w")
        rate = Fraction(fps).limit_denominator(1001)
        errors = []
        for codec in ("libx264", "h264", "mpeg4"):
            try:
                self.stream = self.container.add_stream(codec, rate=rate)
                break
            except (av.FFmpegError, ValueError) as exc:
                errors.append(f"{codec}: {exc}")
        else:
            self.container.close()
            raise RuntimeError(f"{path}: no usable video encoder ({'; '.join(errors)})")
        self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, "yuv420p"
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        vf = self.av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        for packet in self.stream.encode(vf):
            self.container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()


class ReenactmentWriter(BasePredictionWriter):
    """Saves predictions under the datamodule's ``output_dir`` (default ``<run folder>/reenactment``).

    ``grid`` (datamodule setting) writes ``source | target input | reenacted`` side by side instead of the
    reenacted face alone. Videos keep the driving video's frame rate and every frame.
    """

    def __init__(self) -> None:
        super().__init__(write_interval="batch")
        self._video: _VideoStream | None = None
        self.written: list[Path] = []

    def _settings(self, trainer) -> tuple[Path, bool, float | None]:
        dm = trainer.datamodule
        h = getattr(dm, "hparams", {})
        out = h.get("output_dir") if hasattr(h, "get") else None
        if not out:
            out = Path(trainer.log_dir or trainer.default_root_dir) / "reenactment"
        inputs = getattr(dm, "predict_inputs", None)
        fps = inputs.fps if inputs is not None and inputs.is_video else None
        return Path(out), bool(h.get("grid", False)) if hasattr(h, "get") else False, fps

    def write_on_batch_end(
        self, trainer, pl_module, prediction: Any, batch_indices, batch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        out_dir, grid, fps = self._settings(trainer)
        for i in range(prediction["reenacted"].shape[0]):
            panels = [prediction["reenacted"][i]]
            if grid:
                tgt = (
                    prediction["target_input"][i] if prediction["target_input"] is not None else prediction["target"][i]
                )
                panels = [prediction["source"][i], tgt, prediction["reenacted"][i]]
            frame = to_uint8(torch.cat(panels, dim=2))
            if fps is not None:
                if self._video is None:
                    path = out_dir / f"{prediction['name'][i]}_reenacted.mp4"
                    self._video = _VideoStream(path, fps, frame.shape[1], frame.shape[0])
                    self.written.append(path)
                self._video.write(frame)
            else:
                from PIL import Image

                out_dir.mkdir(parents=True, exist_ok=True)
                path = out_dir / f"{prediction['name'][i]}_reenacted{'_grid' if grid else ''}.png"
                Image.fromarray(frame).save(path)
                self.written.append(path)

    def on_predict_end(self, trainer, pl_module) -> None:
        if self._video is not None:
            self._video.close()
            if trainer.is_global_zero:
                print(f"[stylemask] wrote {self._video.frames} frames to {self._video.path}", flush=True)
            self._video = None
        elif self.written and trainer.is_global_zero:
            print(f"[stylemask] wrote {len(self.written)} image(s) to {self.written[-1].parent}", flush=True)
