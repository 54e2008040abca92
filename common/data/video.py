"""Video reading and writing with PyAV (used by DFER-CLIP, StyleMask and HyperReenact).

Frames are RGB ``uint8`` numpy arrays ``[H, W, 3]``. Every failure names the file and what went wrong.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from common.errors import UserError

__all__ = ["VideoError", "read_video", "iter_video", "video_info", "write_video"]

# Encoders tried in order by write_video: H.264 through libx264 (or whatever FFmpeg maps "h264" to), then MPEG-4 part 2.
_ENCODERS = ("libx264", "h264", "mpeg4")


class VideoError(UserError, ValueError):
    """A video file could not be opened, decoded or written; the message names the file."""


def _open_input(path: str | os.PathLike):
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"video file not found: {p}")
    try:
        container = av.open(str(p), mode="r")
    except av.FFmpegError as e:
        raise VideoError(f"{p}: cannot open as a video ({e})") from e
    if not container.streams.video:
        container.close()
        raise VideoError(f"{p}: contains no video stream")
    return container


def _fps(stream, path) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate:
        raise VideoError(f"{path}: the video stream has no frame rate")
    return float(rate)


def iter_video(path: str | os.PathLike) -> Iterator[np.ndarray]:
    """Yield the frames of the first video stream of ``path`` as RGB ``uint8 [H,W,3]`` arrays, in order.

    Raises ``FileNotFoundError`` / ``VideoError`` (naming the file and the frame index) on bad input.
    """
    container = _open_input(path)
    index = 0
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")
                index += 1
        except av.FFmpegError as e:
            raise VideoError(f"{path}: cannot decode frame {index} ({e})") from e
    finally:
        container.close()


def read_video(
    path: str | os.PathLike, max_frames: int | None = None, indices: Sequence[int] | None = None
) -> tuple[np.ndarray, float]:
    """Frames of ``path``: ``(frames uint8 [T,H,W,3] RGB, fps)``.

    All frames, the first ``max_frames``, or only the frames at ``indices`` (in the order given, repeats
    allowed; decoding stops after the largest index, other frames are not kept).
    """
    container = _open_input(path)
    try:
        fps = _fps(container.streams.video[0], path)
    finally:
        container.close()
    if indices is not None:
        wanted = [int(i) for i in indices]
        if not wanted or min(wanted) < 0:
            raise VideoError(f"{path}: frame indices must be a non-empty list of non-negative integers")
        last, keep, decoded = max(wanted), {}, 0
        for frame in iter_video(path):
            if decoded in wanted:
                keep[decoded] = frame
            decoded += 1
            if decoded > last:
                break
        if last not in keep:
            raise VideoError(f"{path}: frame index {last} requested but the video has {decoded} frames")
        return np.stack([keep[i] for i in wanted]), fps
    frames = []
    for frame in iter_video(path):
        if max_frames is not None and len(frames) >= max_frames:
            break
        frames.append(frame)
    if not frames:
        raise VideoError(f"{path}: the video stream has no decodable frames")
    return np.stack(frames), fps


def video_info(path: str | os.PathLike) -> tuple[int, float, tuple[int, int]]:
    """``(num_frames, fps, (H, W))`` of the first video stream, without decoding frames.

    The frame count comes from the container header; when the header has none, packets are counted.
    """
    container = _open_input(path)
    try:
        stream = container.streams.video[0]
        fps = _fps(stream, path)
        size = (int(stream.codec_context.height), int(stream.codec_context.width))
        n = int(stream.frames or 0)
        if n <= 0:
            try:
                n = sum(1 for packet in container.demux(stream) if packet.size > 0)
            except av.FFmpegError as e:
                raise VideoError(f"{path}: cannot read packets to count frames ({e})") from e
    finally:
        container.close()
    return n, fps, size


def _as_frame(frame, path, index: int, size: tuple[int, int] | None) -> np.ndarray:
    arr = np.asarray(frame.detach().cpu() if hasattr(frame, "detach") else frame)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise VideoError(f"{path}: frame {index} must be [H,W,3] RGB, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise VideoError(f"{path}: frame {index} must be uint8, got {arr.dtype}")
    if size is not None and arr.shape[:2] != size:
        raise VideoError(f"{path}: frame {index} has size {arr.shape[:2]}, the first frame had {size}")
    if arr.shape[0] % 2 or arr.shape[1] % 2:
        raise VideoError(f"{path}: frame size {arr.shape[:2]} must be even for yuv420p encoding (crop or pad first)")
    return np.ascontiguousarray(arr)


def _add_stream(container, fps: float, width: int, height: int, codec: str | None, path):
    rate = Fraction(fps).limit_denominator(1001)
    errors = []
    for name in (codec,) if codec else _ENCODERS:
        try:
            stream = container.add_stream(name, rate=rate)
        except (av.FFmpegError, ValueError) as e:  # encoder not built into this FFmpeg
            errors.append(f"{name}: {e}")
            continue
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if name in ("libx264", "h264"):
            stream.options = {"crf": "18", "preset": "medium"}
        else:
            stream.bit_rate = 8_000_000
        return stream
    raise VideoError(f"{path}: no usable video encoder ({'; '.join(errors)})")


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float, codec: str | None = None) -> int:
    """Write RGB ``uint8 [H,W,3]`` frames to ``path`` at ``fps`` (H.264, falling back to MPEG-4).

    ``frames`` may be any iterable (a generator is consumed once, never held in memory) or a
    ``[T,H,W,3]`` array. Returns the number of frames written. H and W must be even.
    """
    if not fps or fps <= 0:
        raise VideoError(f"{path}: fps must be positive, got {fps}")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    container = av.open(str(p), mode="w")
    stream = None
    count = 0
    size = None
    try:
        for i, frame in enumerate(frames):
            arr = _as_frame(frame, p, i, size)
            if stream is None:
                size = arr.shape[:2]
                stream = _add_stream(container, fps, arr.shape[1], arr.shape[0], codec, p)
            vf = av.VideoFrame.from_ndarray(arr, format="rgb24")
            for packet in stream.encode(vf):
                container.mux(packet)
            count += 1
        if stream is None:
            raise VideoError(f"{p}: no frames to write")
        for packet in stream.encode():
            container.mux(packet)
    except av.FFmpegError as e:
        raise VideoError(f"{p}: encoding failed after {count} frames ({e})") from e
    finally:
        container.close()
    return count
