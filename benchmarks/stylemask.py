"""StyleMask training-step throughput on CPU: ours vs the same step as the official code runs it, and where it goes.

    python benchmarks/stylemask.py                                   # tiny (32 px) and 256 px, CPU
    python benchmarks/stylemask.py --sizes tiny 128 --threads 1      # what one CPU thread measures in minutes
    python benchmarks/stylemask.py --sizes 256 --batch-256 12 --iters 1 --warmup 0

One step = generate source/target/cycle-target codes and images (no grad), 3D coefficients and identity of
them, three reenactments (r, h1 = mix(s, t'), h2 = mix(r, t')) rendered with gradient, their coefficients and
identity, the losses, backward into the mask networks, Adam. Two variants of the same step:

* ``official``: as the official code computes it: DECA and ArcFace one image at a time, and the generator as
  rosinality's code runs on CPU (``benchmarks._util.straightforward_ops``: zero-insertion ``upfirdn2d``,
  ``F.leaky_relu``, the grouped modulated convolution even when gradients flow). The official code also runs a
  FAN landmark detector per image for DECA's crop; no variant here does, so the official step is slower still;
* ``ours``: DECA and ArcFace on whole batches, cuda_ops' reference ops and the modulated convolution in the
  formulation chosen by what is computed (``common.stylegan2.layers.ModulatedConv2d``).

Then the step's components timed alone on the step's shapes (``--breakdown``, default on): generator without
grad (3 image sets), generator render with grad (forward + backward to the styles, 3 reenactments), DECA and
ArcFace (no grad on the generated sets + forward/backward on the reenactments), landmarks and losses (FLAME
decode, projected-landmark and identity terms, forward + backward); "rest" is the step minus those (mask
networks, style mixing, pooling, Adam).

Sizes: "tiny" = 32 px generator and tiny random face stand-ins (the demo/test path); "256" = 256 px StyleGAN2
(channel multiplier 2) with randomly initialised full-size IR-SE50 ArcFace (112 px) and ResNet-50 DECA encoder
(224 px) and a 5023-vertex morphable model; "128" = the same face networks with a 128 px generator (10 of its 11
convs controlled), what fits a few minutes on one CPU thread. Random weights: speed only. FLOPs by
torch.utils.flop_counter. The official batch size is 12 (``--batch-256 12``); the default batch of the 128 and
256 px sizes is 2 to keep a CPU run short.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import warnings
from collections.abc import Callable

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks._util import (
    count_flops,
    fmt_rate,
    matmul_flops_reference,
    peak_memory_mb,
    straightforward_ops,
    timeit,
)
from projects.stylemask.data import RandomLatentTriplets
from projects.stylemask.loss import reenactment_loss
from projects.stylemask.module import StyleMaskModule

SIZES = {
    "tiny": dict(
        image_size=32,
        style_dim=32,
        n_mlp=2,
        channel_multiplier=1,
        channel_max=16,
        num_layers_control=5,
        face_models="tiny",
        loss_size=32,
        mean_latent_samples=256,
    ),
    "128": dict(  # the real face networks with a smaller generator: what fits a few minutes on one CPU thread
        image_size=128,
        style_dim=512,
        n_mlp=8,
        channel_multiplier=2,
        num_layers_control=10,
        face_models="random_full",
        loss_size=128,
        mean_latent_samples=1024,
    ),
    "256": dict(
        image_size=256,
        style_dim=512,
        n_mlp=8,
        channel_multiplier=2,
        num_layers_control=12,
        face_models="random_full",
        loss_size=256,
        mean_latent_samples=1024,
    ),
}


def make_module(size: str, per_image: bool, device: str) -> StyleMaskModule:
    kw = SIZES[size]
    m = StyleMaskModule(random_generator=True, inverter="none", per_image_analysis=per_image, **kw).to(device)
    m.train()
    m.log = m.log_dict = lambda *a, **k: None  # no trainer attached
    return m


def make_batch(size: str, batch: int, device: str) -> dict[str, torch.Tensor]:
    ds = RandomLatentTriplets(batch, SIZES[size]["style_dim"], seed=0)
    return {k: torch.stack([ds[i][k] for i in range(batch)]).to(device) for k in ds[0]}


def in_variant(official: bool):
    """The official variant runs the generator as rosinality's CPU code (see the module docstring)."""
    return straightforward_ops() if official else contextlib.nullcontext()


def make_step(m: StyleMaskModule, b: dict[str, torch.Tensor], official: bool):
    opt = m.configure_optimizers()

    def step() -> None:
        with in_variant(official):
            opt.zero_grad(set_to_none=True)
            m.training_step(b, 0).backward()
            opt.step()

    return step


def component_steps(m: StyleMaskModule, b: dict[str, torch.Tensor], official: bool) -> dict[str, Callable]:
    """Each component of a step alone, on the step's shapes (see the module docstring)."""
    h = m.hparams
    n = b["z_source"].shape[0]
    with torch.no_grad():
        z = torch.cat([b["z_source"], b["z_target"], b["z_cycle"]])
        wplus, styles, images = m._generate(z)
        coeffs, emb = m._analyse(images)
    g = torch.Generator().manual_seed(1)

    def generate() -> None:
        with torch.no_grad():
            m._generate(z)

    def render() -> None:
        s = [x.detach().requires_grad_(True) for x in styles]
        out = m.loss_view(m.reenactor.render(s, wplus[:n].repeat(3, 1, 1)))
        out.backward(torch.randn(out.shape, generator=g))

    def analysed(fn) -> Callable[[], None]:
        def run() -> None:
            with torch.no_grad():  # the three generated sets
                fn(images)
            x = images.detach().requires_grad_(True)  # the three reenactments
            out = fn(x)
            flat = torch.cat([v.flatten(1) for v in (out.values() if isinstance(out, dict) else [out])], 1)
            flat.backward(torch.randn(flat.shape, generator=g))

        return run

    def per_image(fn):
        return lambda x: _cat([fn(xi[None]) for xi in x]) if h.per_image_analysis else fn(x)

    def losses() -> None:
        c = [{k: v.detach().requires_grad_(True) for k, v in part.items()} for part in m._split(coeffs, n)]
        e = emb.detach().requires_grad_(True).split(n)
        total = sum(
            reenactment_loss(m.faces.flame_fn, c[0], c[1], c[i], e[0], e[i], h.lambda_shape, h.lambda_identity,
                             m.faces.geometry_size)[0]
            for i in range(3)
        )  # fmt: skip
        total.backward()

    fns = {
        "generator (no grad)": generate,
        "generator render (fwd+bwd)": render,
        "DECA": analysed(per_image(m.faces.coefficients)),
        "ArcFace": analysed(per_image(m.faces.embed)),
        "landmarks + losses": losses,
    }
    return {k: (lambda f=f: _run_in(official, f)) for k, f in fns.items()}


def _run_in(official: bool, fn: Callable[[], None]) -> None:
    with in_variant(official):
        fn()


def _cat(parts: list) -> torch.Tensor | dict[str, torch.Tensor]:
    if isinstance(parts[0], dict):
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    return torch.cat(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=["tiny", "256"], choices=sorted(SIZES))
    ap.add_argument("--batch-tiny", type=int, default=12)
    ap.add_argument("--batch-256", type=int, default=2, help="batch of the 128 and 256 px sizes")
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps after the FLOP-counting step")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--no-breakdown", dest="breakdown", action="store_false", help="skip the per-component times")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    device = "cpu"
    roof = matmul_flops_reference(device=device)
    print(f"device cpu, {torch.get_num_threads()} threads; matmul 2048^2 fp32 roof {fmt_rate(roof)}")
    print(
        f"{'size':<6}{'batch':>6}  {'variant':<10}{'s/step':>9}{'steps/s':>9}{'img/s':>8}"
        f"{'GFLOP/step':>12}{'achieved':>14}{'of roof':>8}{'peak RSS MB':>13}  {'speed-up':>8}"
    )
    for size in args.sizes:
        batch = args.batch_tiny if size == "tiny" else args.batch_256
        seconds, parts = {}, {}
        for variant in ("official", "ours"):
            official = variant == "official"
            m = make_module(size, official, device)
            b = make_batch(size, batch, device)
            step = make_step(m, b, official)
            flops = count_flops(step)  # also the first (untimed) step
            sec = timeit(step, warmup=args.warmup, iters=args.iters, device=device)
            seconds[variant] = sec
            ratio = f"{seconds['official'] / sec:7.2f}x" if variant == "ours" else f"{'1.00x':>8}"
            print(
                f"{size:<6}{batch:>6}  {variant:<10}{sec:9.3f}{1 / sec:9.3g}{batch / sec:8.3g}"
                f"{flops / 1e9:12.2f}{fmt_rate(flops / sec):>14}{flops / sec / roof:8.1%}"
                f"{peak_memory_mb(device):13.0f}  {ratio}",
                flush=True,
            )
            if args.breakdown:
                comps = component_steps(m, b, official)
                parts[variant] = {k: timeit(f, warmup=1, iters=args.iters, device=device) for k, f in comps.items()}
                parts[variant]["rest (masks, mixing, Adam)"] = sec - sum(parts[variant].values())
            del m, step
        if args.breakdown:
            print(f"\n  where a {size} step goes (s; components alone on the step's shapes, median of {args.iters})")
            print(f"  {'component':<30}{'official':>10}{'ours':>10}{'speed-up':>10}")
            for k in parts["ours"]:
                o, u = parts["official"][k], parts["ours"][k]
                print(f"  {k:<30}{o:10.3f}{u:10.3f}{(o / u if u > 0 else float('nan')):9.2f}x")
            print(f"  {'step':<30}{seconds['official']:10.3f}{seconds['ours']:10.3f}"
                  f"{seconds['official'] / seconds['ours']:9.2f}x\n")  # fmt: skip
    print("img/s counts source faces reenacted per second (each step also renders 3 reenactments with the cycle).")


if __name__ == "__main__":
    main()
