"""DFER-CLIP training throughput: ViT-B/32, 16 frames at 224 px, random weights, one SGD step per batch.

    python benchmarks/dferclip.py            # CPU at batch 2 (+ GPU fp32 / bf16 at --gpu-batch when available)

Prints clips/s, peak memory, FLOPs per step (torch.utils.flop_counter) and the achieved FLOP/s beside a large
matmul timed in the same run (the roof). The text tower (7 prompts) runs every step, as in training.

On CPU the step runs in each attention layout, calls interleaved in one run (ratio = layout / ours):
``ours`` (the model as built: the text tower through ``projects.dferclip.model.run_blocks``, the in-projection
as one matrix product over all tokens; the image tower through open_clip), ``ours+image`` (the image tower
through ``run_blocks`` too), ``open_clip`` (``nn.MultiheadAttention`` on batch-first input everywhere, as
open_clip runs it) and ``official`` (sequence-first input everywhere, as OpenAI's CLIP code in the official
repository runs it). Then where a step's time goes: the text tower (7 prompts x 77 tokens, forward + backward
to the learnable contexts) and the video tower (batch x 16 frames through the image encoder and the temporal
transformer, forward + backward), per layout, timed interleaved.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks._util import (
    count_flops,
    fmt_rate,
    matmul_flops_reference,
    peak_memory_mb,
    reset_peak_memory,
    time_interleaved,
    timeit,
)
from projects.dferclip import model as dfer_model
from projects.dferclip.module import DFERCLIPModule

LAYOUTS = ("ours", "ours+image", "open_clip", "official")


@contextlib.contextmanager
def attention_layout(module: torch.nn.Module, layout: str):
    """Run every open_clip transformer of ``module`` in ``layout`` (see the module docstring) within the block."""
    transformers = [m for m in module.modules() if hasattr(m, "resblocks") and hasattr(m, "batch_first")]
    saved_run = dfer_model.run_blocks
    saved_fwd = [(t, t.__dict__.get("forward")) for t in transformers]
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    try:
        if layout == "ours+image":  # the text tower calls run_blocks itself; route the image tower through it too
            for t in transformers:
                t.forward = lambda x, attn_mask=None, t=t: saved_run(t, x, attn_mask)
        elif layout != "ours":
            dfer_model.run_blocks = lambda t, x, attn_mask=None: t(x, attn_mask=attn_mask)
            if layout == "official":
                for t in transformers:
                    t.batch_first = False
                    for blk in t.resblocks:
                        blk.attn.batch_first = False
        yield
    finally:
        dfer_model.run_blocks = saved_run
        for t, fwd in saved_fwd:
            if fwd is None:
                t.__dict__.pop("forward", None)
            t.batch_first = True
            for blk in t.resblocks:
                blk.attn.batch_first = True


def tower_times(batch: int, iters: int, frames: int = 16) -> dict[tuple[str, str], float]:
    """Median seconds of the text tower's and the video tower's forward + backward per layout (CPU)."""
    torch.manual_seed(0)
    module = DFERCLIPModule(clip_arch="ViT-B-32", clip_weights=None, num_frames=frames)
    model = module.model
    video = torch.rand(batch, frames, 3, 224, 224)
    with torch.no_grad():
        ref_text = model.encode_text()
        ref_video = model.encode_video(video)

    def text() -> None:
        model.encode_text().square().sum().backward()

    def vid() -> None:
        model.encode_video(video).square().sum().backward()

    fns = {}
    for layout in LAYOUTS:
        with attention_layout(model, layout), torch.no_grad():
            d_text = (model.encode_text() - ref_text).abs().max().item()
            d_video = (model.encode_video(video) - ref_video).abs().max().item()
        print(f"  {layout:10s} max|diff| vs the default forward: text {d_text:.1e}, video {d_video:.1e}")

        def run(fn=None, layout=layout):
            with attention_layout(model, layout):
                fn()

        fns[("text", layout)] = lambda run=run: run(text)
        fns[("video", layout)] = lambda run=run: run(vid)
    out = {}
    for tower in ("text", "video"):
        t = time_interleaved({k: v for k, v in fns.items() if k[0] == tower}, iters, "cpu")
        out.update({k: v[0] for k, v in t.items()})
        module.zero_grad(set_to_none=True)
    return out


def bench(device: str, batch: int, dtype: torch.dtype | None, iters: int, frames: int = 16) -> dict[str, float]:
    """Seconds per training step, clips/s, peak MiB and achieved FLOP/s of one configuration."""
    module, step = make_step(device, batch, dtype, frames)
    flops = count_flops(step)
    reset_peak_memory(device)
    sec = timeit(step, warmup=1, iters=iters, device=device)
    return {"sec": sec, "clips_s": batch / sec, "peak_mb": peak_memory_mb(device), "flops": flops / sec}


def make_step(device: str, batch: int, dtype: torch.dtype | None, frames: int = 16):
    """A ViT-B/32 DFER-CLIP module (random weights) and a closure running one training step on a random batch."""
    torch.manual_seed(0)
    module = DFERCLIPModule(clip_arch="ViT-B-32", clip_weights=None, num_frames=frames).to(device)
    opt = module.configure_optimizers()["optimizer"]
    video = torch.rand(batch, frames, 3, 224, 224, device=device)
    label = torch.randint(0, 7, (batch,), device=device)
    amp = torch.autocast(device_type=device, dtype=dtype) if dtype is not None else contextlib.nullcontext()

    def step():
        with amp:
            loss = F.cross_entropy(module(video).float(), label)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return module, step


def bench_layouts(batch: int, iters: int, frames: int = 16) -> dict[str, dict[str, float]]:
    """CPU training step in every layout of :data:`LAYOUTS`, interleaved: s/step, clips/s, FLOP/s per layout."""
    module, step = make_step("cpu", batch, None, frames)
    flops = count_flops(step)  # the same work in every layout

    def in_layout(layout: str):
        def run() -> None:
            with attention_layout(module.model, layout):
                step()

        return run

    t = time_interleaved({lay: in_layout(lay) for lay in LAYOUTS}, iters, "cpu")
    return {
        lay: {"sec": w, "clips_s": batch / w, "peak_mb": peak_memory_mb("cpu"), "flops": flops / w}
        for lay, (w, _) in t.items()
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--cpu-batch", type=int, default=2)
    p.add_argument("--gpu-batch", type=int, default=48, help="the official batch size")
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--skip-towers", action="store_true", help="skip the per-tower layout comparison")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    roof = matmul_flops_reference(2048, torch.float32, "cpu")
    cpu = bench_layouts(args.cpu_batch, args.iters)
    for lay in LAYOUTS:
        rows.append(("cpu", f"fp32 {lay}", args.cpu_batch, cpu[lay], roof))
    if torch.cuda.is_available():
        for name, dt in (("fp32", None), ("bf16-mixed", torch.bfloat16)):
            ref = matmul_flops_reference(8192, torch.float32 if dt is None else torch.bfloat16, "cuda")
            rows.append(("cuda", name, args.gpu_batch, bench("cuda", args.gpu_batch, dt, args.iters + 2), ref))
    print(f"DFER-CLIP train step, ViT-B/32, 16 frames x 224 px, torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads" + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""))  # fmt: skip
    print(f"{'device':6s} {'precision / layout':20s} {'batch':>5s} {'s/step':>8s} {'clips/s':>8s} {'peak MiB':>9s} "
          f"{'achieved':>14s} {'matmul roof':>14s} {'% roof':>7s} {'vs ours':>8s}")  # fmt: skip
    for dev, name, b, r, ref in rows:
        vs = f"{r['sec'] / cpu['ours']['sec']:7.2f}x" if dev == "cpu" else ""
        print(f"{dev:6s} {name:20s} {b:5d} {r['sec']:8.3f} {r['clips_s']:8.2f} {r['peak_mb']:9.0f} "
              f"{fmt_rate(r['flops']):>14s} {fmt_rate(ref):>14s} {100 * r['flops'] / ref:6.1f}% {vs}")  # fmt: skip
    print("peak MiB: CUDA allocator peak on the GPU, process peak RSS on the CPU (cumulative over the CPU layouts)")
    print("vs ours: s/step of the layout / s/step of ours, interleaved in one run (> 1: ours is faster)")
    if args.skip_towers:
        return
    print(f"\nCPU: forward + backward per tower, batch {args.cpu_batch}, median of {args.iters} interleaved runs (s)")
    t = tower_times(args.cpu_batch, args.iters)
    others = [lay for lay in LAYOUTS if lay != "ours"]
    print(
        f"{'tower':8s} "
        + " ".join(f"{lay:>10s}" for lay in LAYOUTS)
        + "".join(f" {lay + '/ours':>16s}" for lay in others)
    )
    for tower in ("text", "video"):
        ours = t[(tower, "ours")]
        print(
            f"{tower:8s} "
            + " ".join(f"{t[(tower, lay)]:10.3f}" for lay in LAYOUTS)
            + "".join(f" {t[(tower, lay)] / ours:15.2f}x" for lay in others)
        )


if __name__ == "__main__":
    main()
