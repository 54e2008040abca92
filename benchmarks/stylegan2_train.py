"""StyleGAN2 training iteration on CPU: our ops vs the straightforward formulation, side by side in one run.

    python benchmarks/stylegan2_train.py                      # 256 px, channel_multiplier 1, batch 4 (the issue's)
    python benchmarks/stylegan2_train.py --size 64 --channel_max 128 --batch 16 --no-straightforward

One iteration of ``projects.stylegan2``'s recipe (``StyleGAN2Module.train_iteration``, random weights and
images): D step, G step, lazy R1 (double backward through D) every 16 iterations and lazy path-length
regularisation (double backward through G) every 4. Each kind of iteration is timed (interleaved, median of
``--reps``): ``i=1`` (no regulariser), ``i=4`` (path length), ``i=0`` (both); the averaged iteration is
``t1 + (t4 - t1) / 4 + (t0 - t4) / 16``. "straightforward" runs the same iteration with rosinality's CPU fallback
of the ops (zero insertion + pad + depthwise convolution for upfirdn2d, ``F.leaky_relu`` for the fused bias and
activation; ``benchmarks._util.straightforward_ops``). FLOP/s uses the FLOPs of our formulation for both (the
useful work; the zero-inserted convolutions do more). Peak memory: growth of the peak RSS over the RSS before
one averaged-iteration set (Linux), per variant.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._util import fmt_rate, matmul_flops_reference, peak_memory_mb  # noqa: E402
from projects.stylegan2.module import StyleGAN2Module  # noqa: E402


def _reset_cpu_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class _GlobalOnly:
    """Stands in for FlopCounterMode's module tracker: its module hooks break ``autograd.grad`` with respect to a
    leaf input (R1's gradient with respect to the real images); only the global total is needed here."""

    parents = {"Global"}

    def __enter__(self):
        return self

    def __exit__(self, *args) -> None:
        return None


def count_flops(fn) -> int:
    """FLOPs of ``fn()`` (forward, backward and double backward ops) by ``torch.utils.flop_counter``."""
    mode = FlopCounterMode(display=False)
    mode.mod_tracker = _GlobalOnly()
    with mode:
        fn()
    return mode.get_total_flops()


def build(args) -> tuple[StyleGAN2Module, torch.Tensor, object, object]:
    torch.manual_seed(0)
    m = StyleGAN2Module(
        size=args.size, channel_multiplier=args.cm, channel_max=args.channel_max, channel_base=args.channel_base,
        style_dim=args.style_dim, n_mlp=args.n_mlp, n_sample=1,
    )  # fmt: skip
    opt_g, opt_d = m.configure_optimizers()
    real = torch.randn(args.batch, 3, args.size, args.size).clamp(-1, 1)
    return m, real, opt_g, opt_d


def averaged(t: dict[int, float]) -> float:
    """The mean over a 16-iteration cycle from the three iteration kinds."""
    return t[1] + (t[4] - t[1]) / 4 + (t[0] - t[4]) / 16


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--cm", type=int, default=1, help="channel_multiplier")
    ap.add_argument("--channel_max", type=int, default=512)
    ap.add_argument("--channel_base", type=int, default=None)
    ap.add_argument("--style_dim", type=int, default=512)
    ap.add_argument("--n_mlp", type=int, default=8)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    ap.add_argument("--no-straightforward", action="store_true", help="time our ops only")
    ap.add_argument("--no-flops", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    m, real, opt_g, opt_d = build(args)
    widths = {r: c for r, c in m.generator.channels.items()}
    n_g = sum(p.numel() for p in m.generator.parameters())
    n_d = sum(p.numel() for p in m.discriminator.parameters())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU thread(s)")
    print(f"{args.size} px, channel_multiplier {args.cm}, widths {widths}, batch {args.batch}, "
          f"G {n_g / 1e6:.2f} M / D {n_d / 1e6:.2f} M parameters")  # fmt: skip

    variants: dict[str, contextlib.AbstractContextManager] = {"ours (cuda_ops reference)": contextlib.nullcontext}
    if not args.no_straightforward:
        try:
            from benchmarks._util import straightforward_ops
        except ImportError:
            raise SystemExit(
                "benchmarks/_util.py has no straightforward_ops yet; run with --no-straightforward"
            ) from None

        variants["straightforward (rosinality CPU fallback)"] = straightforward_ops

    def run(i: int) -> dict:
        return m.train_iteration(real, i, opt_g, opt_d)

    # the same iteration from the same weights gives the same losses in both formulations
    state = {k: v.clone() for k, v in m.state_dict().items()}
    og, od = opt_g.state_dict(), opt_d.state_dict()
    logs = {}
    for name, ctx in variants.items():
        m.load_state_dict(state)
        opt_g.load_state_dict(og)
        opt_d.load_state_dict(od)
        with ctx():
            logs[name] = run(0)
    if len(logs) == 2:
        a, b = logs.values()
        rel = {k: abs(float(a[k]) - float(b[k])) / max(abs(float(a[k])), 1e-12) for k in ("d", "r1", "g", "path")}
        shown = ", ".join(f"{k} {float(a[k]):.4g} ({v:.1e})" for k, v in rel.items())
        print(f"same iteration in both formulations, losses (relative difference): {shown}")

    flops = None
    if not args.no_flops:
        f = {i: count_flops(lambda i=i: run(i)) for i in (1, 4, 0)}
        flops = averaged({k: float(v) for k, v in f.items()})
        print(f"FLOPs of an averaged iteration (ours, torch.utils.flop_counter): {flops / 1e9:.1f} GFLOP")
    ref = matmul_flops_reference(2048)
    print(f"CPU matmul reference (2048^2 fp32, {torch.get_num_threads()} threads): {fmt_rate(ref)}")

    times: dict[str, dict[int, list[float]]] = {n: {1: [], 4: [], 0: []} for n in variants}
    peaks: dict[str, float | None] = {}
    for name, ctx in variants.items():  # warm-up and peak memory
        with ctx():
            can = _reset_cpu_peak()
            base = _rss_mb()
            for i in (1, 4, 0):
                run(i)
            peaks[name] = max(0.0, peak_memory_mb() - base) if can else None
    for _ in range(args.reps):
        for name, ctx in variants.items():
            with ctx():
                for i in (1, 4, 0):
                    t0 = time.perf_counter()
                    run(i)
                    times[name][i].append(time.perf_counter() - t0)

    print(f"\n{'variant':<44} {'t1 s':>7} {'t4 s':>7} {'t0 s':>7} {'avg s/it':>9} {'img/s':>7} {'+peak MiB':>9} "
          f"{'FLOP/s':>14} {'of matmul':>9}")  # fmt: skip
    avg_of = {}
    for name in variants:
        t = {i: statistics.median(v) for i, v in times[name].items()}
        avg = averaged(t)
        avg_of[name] = avg
        peak = f"{peaks[name]:9.0f}" if peaks[name] is not None else f"{'n/a':>9}"
        rate = f"{fmt_rate(flops / avg):>14} {flops / avg / ref:9.1%}" if flops else f"{'':>14} {'':>9}"
        print(f"{name:<44} {t[1]:7.2f} {t[4]:7.2f} {t[0]:7.2f} {avg:9.3f} {args.batch / avg:7.2f} {peak} {rate}")
    if len(avg_of) == 2:
        a, b = avg_of.values()
        print(f"\nstraightforward / ours, averaged iteration: {b / a:.2f}x")
        for i, label in ((1, "D+G steps only"), (4, "with path length"), (0, "with R1 and path length")):
            ta = statistics.median(times[list(variants)[0]][i])
            tb = statistics.median(times[list(variants)[1]][i])
            print(f"  i={i} ({label}): {tb / ta:.2f}x")


if __name__ == "__main__":
    main()
