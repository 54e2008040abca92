"""The paperlab web app (Gradio): a page over the same predict functions as the command lines.

Tabs: Reenact (StyleMask, HyperReenact), Expressions (DFER-CLIP over time), Generate (StyleGAN2 samples),
Retrieve (MaskCon). Every handler checks its inputs first (present, under the size limit, readable as an image or a
video with frames) and turns every failure into a message on the page; the server keeps serving. Models come from
``models.ModelStore``; the computation is the projects' own (``projects.stylemask.inference.reenact``,
``projects.hyperreenact.inference.reenact``, ``projects.dferclip.predict.predict_over_time``,
``common.stylegan2.sample.sample``, ``projects.maskcon.retrieve.neighbours``).
"""

from __future__ import annotations

import json
import tempfile
import traceback
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from projects.app.models import ModelStore

DEFAULT_MAX_UPLOAD_MB = 200.0


class InputError(ValueError):
    """A problem with what the user gave; shown on the page as it is."""


def check_upload(path: str | None, what: str, max_mb: float) -> Path:
    """The uploaded file at ``path``, or ``InputError`` when absent or over ``max_mb``."""
    if not path:
        raise InputError(f"no {what} given: upload one first")
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{what}: the uploaded file {p.name} is not on the server any more; upload it again")
    mb = p.stat().st_size / 2**20
    if mb > max_mb:
        raise InputError(f"{what} {p.name} is {mb:.1f} MB, over this app's limit of {max_mb:g} MB per file")
    return p


def check_image(path: str | None, what: str, max_mb: float) -> Path:
    """An uploaded file that decodes as an image."""
    from common.face.detect import load_rgb

    p = check_upload(path, what, max_mb)
    try:
        load_rgb(p)
    except (ValueError, OSError) as e:
        raise InputError(f"{what} {p.name} is not an image this app can read ({str(e).replace(str(p), p.name)})") from e
    return p


def check_video(path: str | None, what: str, max_mb: float) -> tuple[Path, int, float]:
    """An uploaded file that decodes as a video with at least one frame: ``(path, frames, fps)``."""
    from common.data.video import VideoError, iter_video, video_info

    p = check_upload(path, what, max_mb)
    try:
        n, fps, _ = video_info(p)
        first = next(iter(iter_video(p)), None)
    except (VideoError, OSError) as e:
        raise InputError(f"{what} {p.name} is not a video this app can read ({str(e).replace(str(p), p.name)})") from e
    if first is None or n == 0:
        raise InputError(f"{what} {p.name} is a video with no frames")
    return p, n, fps


def error_text(exc: BaseException) -> str:
    """What the page says for ``exc``: the message of the errors users can act on, the type for the others."""
    from common.face.detect import NoFaceError
    from common.weights import MissingWeightsError

    if isinstance(exc, MissingWeightsError):
        return f"A model file is missing, so this tab cannot run yet:\n\n{exc}"
    if isinstance(exc, NoFaceError):
        return (
            f"No face found: {exc}.\nEvery frame is used (none is dropped): trim the video to the frames with a "
            "face, or choose another file."
        )
    if isinstance(exc, (InputError, FileNotFoundError, ValueError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class PaperlabApp:
    """Handlers of the page (plain methods, testable without a browser) and the Gradio layout (``build``)."""

    def __init__(
        self, ckpts: dict[str, str] | None = None, workdir: str | None = None, max_upload_mb: float = 200.0
    ) -> None:
        self.models = ModelStore(ckpts)
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="paperlab_app_"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.max_mb = float(max_upload_mb)

    def _out(self, kind: str) -> Path:
        d = self.workdir / f"{kind}_{uuid.uuid4().hex[:10]}"
        d.mkdir(parents=True)
        return d

    # ------------------------------------------------------------------ Reenact
    def reenact(self, source: str | None, driving: str | None, method: str, progress=None) -> dict[str, Any]:
        """Source image + driving video -> ``{"video", "info"}``: source | driver | reenacted at the driving rate."""
        from common.data.video import video_info, write_video

        src = check_image(source, "source image", self.max_mb)
        drv, n_in, fps_in = check_video(driving, "driving video", self.max_mb)
        out = self._out("reenact")

        def report(done: int, total: int) -> None:
            if progress is not None:
                progress((done, total), desc="reenacting frames", unit="frames")

        if method == "StyleMask":
            from projects.stylemask.inference import reenact

            loaded = self.models.get("stylemask")
            # face-world renders are aligned by construction (and MTCNN is not trained on them)
            align = "none" if loaded.origin.startswith("shipped face-world") else "ffhq"
            res = reenact(loaded.model, src, drv, out, align=align, grid=True, progress=report)
            video = res.video
        elif method == "HyperReenact":
            from PIL import Image

            from projects.hyperreenact.inference import reenact

            loaded = self.models.get("hyperreenact")
            # a face-world model carries its own landmark estimator (the attribute expert): crop with it
            crop = "landmarks" if getattr(loaded.model, "landmarker", None) is not None else "detect"
            res = reenact(loaded.model, src, drv, out, crop=crop, save_frames=False, save_grids=True, progress=report)
            grids = sorted((out / "grids").glob("*.png"))
            video = out / "side_by_side.mp4"
            write_video(video, (np.asarray(Image.open(g).convert("RGB")) for g in grids), res.fps)
        else:
            raise InputError(f"unknown method {method!r}: choose StyleMask or HyperReenact")
        n, fps, (h, w) = video_info(video)
        info = {
            "method": method,
            "model": loaded.origin,
            "frames": n,
            "fps": fps,
            "size": [w, h],
            "driving_frames": n_in,
            "driving_fps": fps_in,
            "layout": "source | driving frame (aligned as the model saw it) | reenacted",
        }
        return {"video": str(video), "info": info}

    # ------------------------------------------------------------------ Expressions
    def expressions(self, video: str | None, window: float, stride: float, progress=None) -> dict[str, Any]:
        """Video -> DFER-CLIP probabilities per time window (rows sum to one) and the face crops the model saw."""
        from projects.dferclip.predict import predict_over_time

        path, _, _ = check_video(video, "video", self.max_mb)
        if not window or window <= 0 or not stride or stride <= 0:
            raise InputError(f"window and stride must be positive seconds, got {window} and {stride}")
        loaded = self.models.get("dferclip")
        model, t, size, normalize = loaded.model

        def report(done: int, total: int) -> None:
            if progress is not None:
                progress((done, total), desc="face crops, then windows", unit="steps")

        tl = predict_over_time(model, path, t, size, window, stride, True, normalize, progress=report)
        probs = tl.probs.tolist()
        crops = [(tl.crops[i], f"frame {i} ({i / tl.fps:.2f} s)") for i in sorted(tl.crops)]
        data = {
            "model": loaded.origin,
            "classes": tl.classes,
            "times": tl.times,
            "windows": [list(w) for w in tl.windows],
            "frames_seen": tl.seen,
            "probs": probs,
            "fps": tl.fps,
            "num_frames": tl.num_frames,
        }
        return {"data": data, "crops": crops}

    # ------------------------------------------------------------------ Generate
    def generate(self, seeds: str, truncation: float, mix: bool, mix_seed: float, mix_from: float) -> dict[str, Any]:
        """Seeds (``"0 1 2"`` or ``"0-7"``) -> StyleGAN2 samples, optionally style-mixed with ``mix_seed``."""
        from common.stylegan2.sample import sample, to_uint8

        ids = parse_seeds(seeds)
        loaded = self.models.get("generator")
        g = loaded.model
        imgs = to_uint8(sample(g, ids, float(truncation)))
        items = [(im, f"seed {s}") for im, s in zip(imgs, ids)]
        if mix:
            ms, mf = int(mix_seed), int(mix_from)
            if not 1 <= mf < g.n_latent:
                raise InputError(f"mix from layer must be in 1..{g.n_latent - 1} for this {g.size} px generator")
            mixed = to_uint8(sample(g, ids, float(truncation), ms, mf))
            items.append((to_uint8(sample(g, [ms], float(truncation)))[0], f"mix seed {ms}"))
            items += [(im, f"seed {s} + seed {ms} from layer {mf}") for im, s in zip(mixed, ids)]
        info = {"model": loaded.origin, "size": g.size, "n_latent": g.n_latent, "seeds": ids}
        return {"images": items, "info": info}

    # ------------------------------------------------------------------ Retrieve
    def retrieve(self, query: float, k: float) -> dict[str, Any]:
        """Test-set index -> the query image and its ``k`` nearest test images with fine labels."""
        from projects.maskcon.retrieve import neighbours

        loaded = self.models.get("maskcon")
        gallery = loaded.model
        q = int(query)
        if not 0 <= q < len(gallery):
            raise InputError(f"query index must be in 0..{len(gallery) - 1} (the test split), got {q}")
        res = neighbours(gallery, q, int(k))
        items = [
            (
                _enlarged(gallery.image(r["index"])),
                f"#{r['index']} fine {r['fine']} (coarse {r['coarse']}) sim {r['similarity']:.2f}",
            )
            for r in res
        ]
        info = {
            "model": loaded.origin,
            "query": {"index": q, "fine": int(gallery.fine[q]), "coarse": int(gallery.coarse[q])},
            "neighbours": res,
            "same_fine_label": sum(r["fine"] == int(gallery.fine[q]) for r in res),
        }
        return {"query": _enlarged(gallery.image(q)), "images": items, "info": info}

    # ------------------------------------------------------------------ page
    def build(self):
        """The Gradio page (``gr.Blocks``)."""
        import gradio as gr
        import pandas as pd

        def safe(fn, n_out: int):
            """Wraps a handler: on any error, empty outputs and the message in the last output."""

            def run(*args, progress=gr.Progress()):
                try:
                    return fn(*args, progress=progress)
                except Exception as exc:  # noqa: BLE001 - every failure becomes a message; the server goes on
                    traceback.print_exc()
                    return (*([None] * (n_out - 1)), "**Error.** " + error_text(exc).replace("\n", "  \n"))

            return run

        def do_reenact(source, driving, method, progress):
            r = self.reenact(source, driving, method, progress)
            i = r["info"]
            msg = (
                f"{i['frames']} frames at {i['fps']:g} fps (driving video: {i['driving_frames']} at "
                f"{i['driving_fps']:g} fps), {i['layout']}. Model: {i['model']}."
            )
            return r["video"], json.dumps(i), msg

        def do_expr(video, window, stride, progress):
            r = self.expressions(video, window, stride, progress)
            d = r["data"]
            rows = [
                {"time (s)": t, "class": c, "probability": p}
                for t, ps in zip(d["times"], d["probs"])
                for c, p in zip(d["classes"], ps)
            ]
            top = [d["classes"][max(range(len(ps)), key=ps.__getitem__)] for ps in d["probs"]]
            msg = (
                f"{len(d['times'])} windows over {d['num_frames']} frames at {d['fps']:g} fps; "
                f"most likely per window: {', '.join(top)}. Model: {d['model']}."
            )
            return pd.DataFrame(rows), r["crops"], json.dumps(d), msg

        def do_generate(seeds, trunc, mix, mix_seed, mix_from, progress):
            r = self.generate(seeds, trunc, mix, mix_seed, mix_from)
            i = r["info"]
            return r["images"], json.dumps(i), f"{len(i['seeds'])} seeds at {i['size']} px. Model: {i['model']}."

        def do_retrieve(query, k, progress):
            r = self.retrieve(query, k)
            i = r["info"]
            q = i["query"]
            msg = (
                f"query #{q['index']}: fine label {q['fine']} (coarse {q['coarse']}); {i['same_fine_label']} of "
                f"{len(i['neighbours'])} neighbours share its fine label. Model: {i['model']}."
            )
            return r["query"], r["images"], json.dumps(i), msg

        with gr.Blocks(title="paperlab") as page:
            gr.Markdown(
                "# paperlab\nThe inference paths of the five papers on one page. Models: your checkpoint "
                "(`--ckpt TAB=PATH`), else the released files of `common/weights.py`, else the shipped face-world "
                f"models. Uploads up to {self.max_mb:g} MB per file."
            )
            with gr.Tab("Reenact", elem_id="tab-reenact"):
                with gr.Row():
                    src = gr.Image(label="source face", type="filepath", elem_id="reenact-source", height=240)
                    drv = gr.Video(label="driving video (or webcam clip)", sources=["upload", "webcam"],
                                   elem_id="reenact-driving", height=240)  # fmt: skip
                method = gr.Radio(["StyleMask", "HyperReenact"], value="StyleMask", label="method",
                                  elem_id="reenact-method")  # fmt: skip
                go = gr.Button("Reenact", variant="primary", elem_id="reenact-run")
                vid = gr.Video(label="source | driver | reenacted", elem_id="reenact-output", height=240)
                msg = gr.Markdown(elem_id="reenact-status")
                info = gr.Textbox(label="result (JSON)", elem_id="reenact-info", lines=2, max_lines=6)
                go.click(safe(do_reenact, 3), [src, drv, method], [vid, info, msg])
            with gr.Tab("Expressions", elem_id="tab-expressions"):
                with gr.Row():
                    clip = gr.Video(label="video clip", sources=["upload", "webcam"], elem_id="expr-video", height=240)
                    with gr.Column():
                        window = gr.Number(value=2.0, label="window (s)", elem_id="expr-window")
                        stride = gr.Number(value=1.0, label="stride (s)", elem_id="expr-stride")
                        go2 = gr.Button("Recognise expressions", variant="primary", elem_id="expr-run")
                plot = gr.LinePlot(x="time (s)", y="probability", color="class", label="class probabilities over time",
                                   elem_id="expr-plot", y_lim=[0, 1])  # fmt: skip
                msg2 = gr.Markdown(elem_id="expr-status")
                crops = gr.Gallery(label="face crops the model saw", columns=8, height=240, elem_id="expr-crops")
                data2 = gr.Textbox(label="probabilities (JSON)", elem_id="expr-json", lines=2, max_lines=6)
                go2.click(safe(do_expr, 4), [clip, window, stride], [plot, crops, data2, msg2])
            with gr.Tab("Generate", elem_id="tab-generate"):
                with gr.Row():
                    seeds = gr.Textbox(value="0-3", label="seeds (e.g. 0 1 2 or 0-7)", elem_id="gen-seeds")
                    trunc = gr.Slider(0.0, 1.0, value=0.7, step=0.05, label="truncation psi", elem_id="gen-trunc")
                with gr.Row():
                    mix = gr.Checkbox(value=False, label="style mixing", elem_id="gen-mix")
                    mix_seed = gr.Number(value=100, precision=0, label="mix seed", elem_id="gen-mix-seed")
                    mix_from = gr.Number(value=4, precision=0, label="mix from W+ layer", elem_id="gen-mix-from")
                go3 = gr.Button("Generate", variant="primary", elem_id="gen-run")
                imgs = gr.Gallery(label="samples", columns=4, height=260, elem_id="gen-output")
                msg3 = gr.Markdown(elem_id="gen-status")
                info3 = gr.Textbox(label="result (JSON)", elem_id="gen-info", lines=1, max_lines=4)
                go3.click(safe(do_generate, 3), [seeds, trunc, mix, mix_seed, mix_from], [imgs, info3, msg3])
            with gr.Tab("Retrieve", elem_id="tab-retrieve"):
                with gr.Row():
                    query = gr.Number(value=0, precision=0, label="query: index in the test split", elem_id="ret-query")
                    k = gr.Slider(1, 32, value=8, step=1, label="neighbours", elem_id="ret-k")
                go4 = gr.Button("Retrieve", variant="primary", elem_id="ret-run")
                with gr.Row():
                    qimg = gr.Image(label="query", elem_id="ret-query-image", height=160, scale=1)
                    nn_imgs = gr.Gallery(label="nearest test images (fine label)", columns=8, height=200,
                                         elem_id="ret-output", scale=4)  # fmt: skip
                msg4 = gr.Markdown(elem_id="ret-status")
                info4 = gr.Textbox(label="result (JSON)", elem_id="ret-info", lines=1, max_lines=4)
                go4.click(safe(do_retrieve, 4), [query, k], [qimg, nn_imgs, info4, msg4])
        return page


def page_theme():
    """Gradio's default theme on local fonts (its default loads web fonts, which an offline machine waits for)."""
    import gradio as gr

    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["monospace"])


def _enlarged(image: np.ndarray, min_side: int = 96) -> np.ndarray:
    """Small data-set images (12 px digits, 32 px CIFAR) enlarged by an integer factor for display (nearest)."""
    k = max(1, -(-min_side // max(image.shape[:2])))
    return image.repeat(k, axis=0).repeat(k, axis=1) if k > 1 else image


def parse_seeds(text: str) -> list[int]:
    """``"0 1 5"``, ``"0,1,5"`` or ``"0-7"`` (and mixes) -> seeds; at most 64."""
    seeds: list[int] = []
    for part in (text or "").replace(",", " ").split():
        try:
            if "-" in part:
                a, b = part.split("-", 1)
                seeds += list(range(int(a), int(b) + 1))
            else:
                seeds.append(int(part))
        except ValueError as e:
            raise InputError(f"seeds: cannot read {part!r} (give integers like 0 1 2 or a range 0-7)") from e
    if not seeds:
        raise InputError("seeds: give at least one integer seed")
    if len(seeds) > 64:
        raise InputError(f"seeds: {len(seeds)} asked, at most 64 at a time")
    return seeds
