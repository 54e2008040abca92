"""Evaluation of reenactment: VoxCeleb1's test videos with the real networks, and the face world's held-out
identities with the face-world networks, through the same :func:`evaluate`.

VoxCeleb1: self-reenactment (first frame as source, every later frame a target; CSIM, LPIPS, FID, pose and
expression distances, PSNR, SSIM) and cross-reenactment (seeded random pairs of identities; CSIM, FID, pose and
expression distances), each also on the large-pose subset (source-target pose difference over 15 degrees).

Our choices where the paper body was unreadable (see the project README): CSIM is the ArcFace cosine between
the output and the source (``csim``) and, in self-reenactment, also the target (``csim_target``), both on the
five-point aligned crops; pose distance is the mean |yaw|, |pitch|, |roll| difference (degrees) of DECA's
global pose, output vs target; expression distance is StyleMask's (jaw + 20 DECA expression coefficients,
min-max normalised when a ranges file is given, raw otherwise); the large-pose test is the largest of the
three source-target angle differences.

The face world (``--faceworld``) adds what real data lacks, the exact answer (``truth``: the source identity
rendered in the driver's pose and expression): PSNR and SSIM against it in both modes, and the landmark error of
the output (the attribute expert's 68-point estimate) against the truth's landmarks, normalised by the
interocular distance (outer eye corners) and in pixels. Pose and expression are measured on both images with the
same crop (the face world's fixed box), so the error does not depend on the method's inputs. Baselines on the
same pairs: the source copied, the driver copied, and the generator's image of the e4e inversion of the truth
(the best a method that only edits the generator can do)::

    python -m projects.hyperreenact.evaluate --root data/voxceleb1_hyperreenact [--checkpoint last.ckpt]
    python -m projects.hyperreenact.evaluate --faceworld [--checkpoint last.ckpt ...] [--seeds 0 1] \
        [--out runs/faceworld_benchmark/hyperreenact.json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from common.face.flame import axis_angle_to_euler
from common.metrics.face import (
    CSIM,
    FID,
    ExpressionDistance,
    LPIPSMetric,
    PoseDistance,
    faceworld_expression_ranges,
    landmark_nme,
    landmark_pixel_error,
    psnr_metric,
    ssim_metric,
)
from projects.hyperreenact.data import EvaluationPairs
from projects.hyperreenact.faceworld import FaceWorldEvaluationPairs, fixed_boxes
from projects.hyperreenact.inference import build_net
from projects.hyperreenact.module import load_module
from projects.hyperreenact.pretrained import load_lpips

LARGE_POSE_DEGREES = 15.0
SELF_METRICS = ("csim", "csim_target", "lpips", "fid", "apd", "aed", "psnr", "ssim")
CROSS_METRICS = ("csim", "fid", "apd", "aed")
LANDMARK_METRICS = ("nme", "landmark_px")
METHODS = ("hyperreenact", "copy_source", "copy_driver", "invert_truth")
# JSON row of the face-world benchmark (StyleMask's evaluation writes the same keys): key -> our metric name
ROW_KEYS = {
    "psnr": "psnr",
    "ssim": "ssim",
    "nme": "nme",
    "landmark_px": "landmark_px",
    "id_cos": "csim",
    "pose_err": "apd",
    "exp_err": "aed",
}


class _Mean:
    """Running mean of per-sample values (float64)."""

    def __init__(self) -> None:
        self.total, self.count = 0.0, 0

    def update(self, values: Tensor) -> None:
        values = values.detach().double().reshape(-1)
        if not torch.isfinite(values).all():
            raise ValueError("non-finite values in a landmark error")
        self.total += float(values.sum())
        self.count += values.numel()

    def compute(self) -> float:
        return self.total / self.count


class _Suite:
    """The metrics of one mode on one subset."""

    def __init__(
        self, mode: str, lpips, fid_weights, ranges, device, num_expressions: int = 20, truth: bool = False
    ) -> None:
        self.mode = mode
        self.m: dict = {
            "csim": CSIM(),
            "apd": PoseDistance(),
            "aed": ExpressionDistance(ranges, num_expressions=num_expressions),
        }
        if mode == "self":
            self.m["csim_target"] = CSIM()
        if mode == "self" or truth:
            self.m["psnr"] = psnr_metric()
            self.m["ssim"] = ssim_metric()
            if lpips is not None:
                self.m["lpips"] = LPIPSMetric(lpips)
        if fid_weights is not None:
            self.m["fid"] = FID(fid_weights)
        for v in self.m.values():
            v.to(device)
        self.landmarks = {k: _Mean() for k in LANDMARK_METRICS}
        self.n = 0

    def update(self, out: Mapping[str, Tensor], batch: Mapping[str, Tensor], mask: Tensor) -> None:
        if not bool(mask.any()):
            return
        sel = {k: v[mask] for k, v in out.items()}
        self.n += int(mask.sum())
        self.m["csim"].update(sel["emb_out"], sel["emb_src"])
        self.m["apd"].update(sel["pose_out"], sel["pose_tgt"])
        self.m["aed"].update(sel["exp_out"], sel["pose_out"], sel["exp_tgt"], sel["pose_tgt"])
        if self.mode == "self":
            self.m["csim_target"].update(sel["emb_out"], sel["emb_tgt"])
        if "psnr" in self.m:
            self.m["psnr"].update(sel["image"], sel["truth"])
            self.m["ssim"].update(sel["image"], sel["truth"])
            if "lpips" in self.m:
                self.m["lpips"].update(sel["image"], sel["truth"])
        if "fid" in self.m:
            self.m["fid"].update(sel["image"], real=False)
            self.m["fid"].update(batch["target"][mask], real=True)
        if "nme" in sel:
            self.landmarks["nme"].update(sel["nme"])
            self.landmarks["landmark_px"].update(sel["landmark_px"])

    def compute(self) -> dict[str, float]:
        res = {"pairs": float(self.n)}
        if self.n == 0:
            return res
        for k, v in self.m.items():
            if k == "fid" and self.n < 2:
                continue
            res[k] = float(v.compute())
        for k, v in self.landmarks.items():
            if v.count:
                res[k] = v.compute()
        return res


def reenacted(net: torch.nn.Module, batch: Mapping[str, Tensor], method: str = "hyperreenact") -> Tensor:
    """The image ``[B,3,S,S]`` (clamped to [-1, 1]) that ``method`` gives for a batch of pairs.

    ``hyperreenact``: the network (source code, appearance of the source, pose of the target); ``copy_source`` /
    ``copy_driver``: the source / driving frame itself; ``invert_truth``: the generator's image of the inverted
    ground truth (``batch["truth"]``), with the same truncation and no offsets.
    """
    if method == "copy_source":
        return batch["source"].clamp(-1, 1)
    if method == "copy_driver":
        return batch["target"].clamp(-1, 1)
    if method == "invert_truth":
        if "truth" not in batch:
            raise ValueError("method 'invert_truth' needs pairs with a ground truth ('truth'): the face world's")
        return net.render_plain(net.invert(batch["truth"])).clamp(-1, 1)
    if method != "hyperreenact":
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    w = batch["source_w"] if "source_w" in batch else net.invert(batch["source"])
    _, f_app = net.app_encoder(batch["source"], batch["source_lm5"])
    _, f_pose = net.pose_encoder(batch["target"], batch["target_box"])
    image, _ = net.render(w, f_pose, f_app)
    return image.clamp(-1, 1)


@torch.no_grad()
def evaluate(
    net: torch.nn.Module,
    loader: Iterable[Mapping[str, Tensor]],
    mode: str,
    lpips: torch.nn.Module | None = None,
    fid_weights: str | None = None,
    ranges=None,
    device: str | torch.device = "cpu",
    large_pose: float = LARGE_POSE_DEGREES,
    num_expressions: int = 20,
    method: str = "hyperreenact",
    measure_boxes: Callable[[Tensor], Tensor] | None = None,
) -> dict[str, dict[str, float]]:
    """Metrics over ``loader`` (items of :class:`~projects.hyperreenact.data.EvaluationPairs` or
    :class:`~projects.hyperreenact.faceworld.FaceWorldEvaluationPairs`) for ``all`` pairs and the ``large_pose``
    subset. ``fid_weights=None`` skips FID (it needs the Inception file). ``num_expressions``: expression
    coefficients in the AED (20, StyleMask's); ``ranges``: its min-max table (file or array), raw when None.
    ``method``: see :func:`reenacted`. ``measure_boxes(images) -> [B,4]``: the boxes of the pose encoder's crop
    for the pose and expression measurement of the output and of the target (default: the target's box for both).

    PSNR, SSIM (and LPIPS when given) compare the output with ``truth`` when the pairs carry one (the face world),
    else with the target in self-reenactment; the landmark error needs ``truth_landmarks`` and ``net.landmarker``.
    """
    if mode not in ("self", "cross"):
        raise ValueError(f"mode must be 'self' or 'cross', got {mode!r}")
    net = net.to(device).eval()
    suites: dict[str, _Suite] | None = None
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        has_truth = "truth" in batch
        if suites is None:
            suites = {
                k: _Suite(mode, lpips, fid_weights, ranges, device, num_expressions, truth=has_truth)
                for k in ("all", "large_pose")
            }
        image = reenacted(net, batch, method)
        emb_src, _ = net.app_encoder(batch["source"], batch["source_lm5"])
        emb_out, _ = net.app_encoder(image, batch["target_lm5"])
        emb_tgt, _ = net.app_encoder(batch["target"], batch["target_lm5"])
        box_out = batch["target_box"] if measure_boxes is None else measure_boxes(image)
        box_tgt = batch["target_box"] if measure_boxes is None else measure_boxes(batch["target"])
        p_out, _ = net.pose_encoder(image, box_out)
        p_tgt, _ = net.pose_encoder(batch["target"], box_tgt)
        p_src, _ = net.pose_encoder(batch["source"], batch["source_box"])
        out = {
            "image": image,
            "truth": batch["truth"] if has_truth else batch["target"],
            "emb_src": emb_src,
            "emb_tgt": emb_tgt,
            "emb_out": emb_out,
            "pose_out": p_out["pose"],
            "pose_tgt": p_tgt["pose"],
            "exp_out": p_out["exp"],
            "exp_tgt": p_tgt["exp"],
        }
        if "truth_landmarks" in batch and getattr(net, "landmarker", None) is not None:
            lm = net.landmarker(image)
            bad = int((~torch.isfinite(lm).flatten(1).all(1)).sum())
            if bad:
                raise ValueError(
                    f"evaluate ({method}, {mode}): the landmark estimate of {bad} of {lm.shape[0]} output images is "
                    "not finite (the attribute expert's camera or pose is out of range), so the landmark error is "
                    "undefined; is the attribute expert the trained one?"
                )
            out["nme"] = landmark_nme(lm, batch["truth_landmarks"])
            out["landmark_px"] = landmark_pixel_error(lm, batch["truth_landmarks"])
        diff = (axis_angle_to_euler(p_src["pose"][:, :3]) - axis_angle_to_euler(p_tgt["pose"][:, :3])).abs()
        big = diff.max(1).values > large_pose
        suites["all"].update(out, batch, torch.ones_like(big))
        suites["large_pose"].update(out, batch, big)
    if suites is None:
        raise ValueError("evaluate: the loader gave no pairs")
    return {k: s.compute() for k, s in suites.items()}


def format_table(results: Mapping[str, Mapping[str, Mapping[str, float]]], paper: Mapping | None = None) -> str:
    """Plain-text table: one row per (mode, subset), one column per metric; ``paper`` rows when given."""
    cols = ["pairs", *dict.fromkeys(SELF_METRICS + CROSS_METRICS + LANDMARK_METRICS)]
    lines = [f"{'':22s}" + "".join(f"{c:>12s}" for c in cols)]
    for mode, subsets in results.items():
        for subset, vals in subsets.items():
            row = f"{'ours ' + mode + '/' + subset:22s}"
            row += "".join(f"{vals[c]:12.4f}" if c in vals else f"{'-':>12s}" for c in cols)
            lines.append(row)
    if paper:
        for name, vals in paper.items():
            lines.append(f"{'paper ' + name:22s}" + "".join(f"{vals.get(c, '-')!s:>12s}" for c in cols))
    return "\n".join(lines)


def faceworld_rows(
    net: torch.nn.Module,
    seeds: Iterable[int],
    modes: Iterable[str] = ("self", "cross"),
    methods: Iterable[str] = METHODS,
    n_pairs: int = 200,
    batch_size: int = 25,
    split: str = "test",
    nets: Mapping[int, torch.nn.Module] | None = None,
    device: str | torch.device = "cpu",
    log: Callable[[str], None] | None = print,
) -> list[dict]:
    """The face-world benchmark as JSON rows ``{"method", "mode", "seed", "psnr", "ssim", "nme", "landmark_px",
    "id_cos", "pose_err", "exp_err", "pairs"}``, one per (seed, mode, method), on held-out (``split``) identities.

    Every method of a (seed, mode) sees the same ``n_pairs`` pairs (rendered once). ``net``: the face-world
    network of the baselines and, unless ``nets`` maps a seed to another one (e.g. a model trained with that
    seed), of HyperReenact. Pose and expression: attribute expert on the fixed face-world box; expression error
    min-max normalised with ``common.metrics.face.faceworld_expression_ranges`` over jaw and the 8 coefficients.
    """
    rows = []
    ranges = faceworld_expression_ranges()
    size = net.generator.size
    for seed in seeds:
        for mode in modes:
            pairs = FaceWorldEvaluationPairs(split, size, n_pairs, mode, seed)
            batches = list(DataLoader(pairs, batch_size=batch_size))
            for method in methods:
                model = net if method != "hyperreenact" or nets is None else nets[seed]
                res = evaluate(
                    model,
                    batches,
                    mode,
                    ranges=ranges,
                    device=device,
                    num_expressions=8,
                    method=method,
                    measure_boxes=fixed_boxes,
                )["all"]
                row = {"method": method, "mode": mode, "seed": int(seed)}
                row.update({k: res.get(v, math.nan) for k, v in ROW_KEYS.items()})
                row["pairs"] = int(res["pairs"])
                rows.append(row)
                if log is not None:
                    log(format_rows([row], header=not rows[:-1]))
    return rows


def summarize(rows: Iterable[Mapping]) -> list[dict]:
    """Mean and spread over seeds: one dict per (method, mode) with ``<key>`` (mean), ``<key>_std`` (sample
    standard deviation over seeds; 0 for one seed) and ``seeds`` (how many)."""
    groups: dict[tuple[str, str], list[Mapping]] = {}
    for r in rows:
        groups.setdefault((str(r["method"]), str(r["mode"])), []).append(r)
    out = []
    for (method, mode), rs in groups.items():
        item: dict = {"method": method, "mode": mode, "seeds": len(rs)}
        for k in ROW_KEYS:
            vals = torch.tensor([float(r.get(k, math.nan)) for r in rs], dtype=torch.float64)
            item[k] = float(vals.mean())
            item[f"{k}_std"] = float(vals.std()) if len(rs) > 1 else 0.0
        out.append(item)
    return out


def format_rows(rows: Iterable[Mapping], header: bool = True, label: str = "") -> str:
    """Plain-text table of benchmark rows (or :func:`summarize` items, printed as mean +- std)."""
    cols = list(ROW_KEYS)
    lines = [f"{'method':26s}{'mode':>6s}{'seed':>7s}" + "".join(f"{c:>16s}" for c in cols)] if header else []
    for r in rows:
        seed = f"n={r['seeds']}" if "seeds" in r else str(r["seed"])
        cells = []
        for c in cols:
            v = float(r.get(c, math.nan))
            cells.append(f"{v:8.4f}+-{float(r[c + '_std']):<6.4f}" if f"{c}_std" in r else f"{v:16.4f}")
        lines.append(f"{(label + r['method'])[:26]:26s}{r['mode']:>6s}{seed:>7s}" + "".join(f"{c:>16s}" for c in cells))
    return "\n".join(lines)


def _load_faceworld(path: str | None) -> torch.nn.Module:
    from common.weights import resolve

    module = load_module(resolve("faceworld_hyperreenact", path))
    if not str(module.hparams.encoders).startswith("faceworld"):
        raise ValueError(f"{path}: a {module.hparams.encoders!r} model, not a face-world one (encoders: faceworld)")
    return module.net


def main_faceworld(argv: list[str] | None = None) -> list[dict]:
    """``--faceworld``: the benchmark on held-out face-world identities (see the module docstring)."""
    p = argparse.ArgumentParser(description="HyperReenact on the face world's held-out identities, with baselines")
    p.add_argument("--faceworld", action="store_true", required=True)
    p.add_argument(
        "--checkpoint",
        nargs="*",
        default=None,
        help="face-world checkpoint(s) (last.ckpt or the shipped .pt); several: one per seed, in --seeds order "
        "(default: the shipped faceworld_hyperreenact)",
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="pair seeds (at least 2 for a spread)")
    p.add_argument("--modes", default="self,cross")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--num-pairs", type=int, default=200, help="pairs per mode and seed")
    p.add_argument("--batch-size", type=int, default=25)
    p.add_argument("--out", default=None, help="write the rows as JSON here")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = p.parse_args(argv)
    ckpts = a.checkpoint or [None]
    if len(ckpts) > 1 and len(ckpts) != len(a.seeds):
        raise ValueError(f"{len(ckpts)} checkpoints for {len(a.seeds)} seeds: give one, or one per seed")
    loaded = [_load_faceworld(c) for c in ckpts]
    nets = dict(zip(a.seeds, loaded)) if len(loaded) > 1 else None
    rows = faceworld_rows(
        loaded[0],
        a.seeds,
        a.modes.split(","),
        a.methods.split(","),
        a.num_pairs,
        a.batch_size,
        nets=nets,
        device=a.device,
    )
    print("\nmean +- std over seeds (held-out identities)")
    print(format_rows(summarize(rows)))
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps({"project": "hyperreenact", "checkpoints": ckpts, "rows": rows}, indent=2))
        print(f"rows -> {a.out}")
    return rows


def main(argv: list[str] | None = None) -> dict | list[dict]:
    from common.weights import MissingWeightsError, resolve

    if "--faceworld" in (sys.argv[1:] if argv is None else argv):
        return main_faceworld(argv)
    p = argparse.ArgumentParser(description="HyperReenact evaluation on VoxCeleb1 test frames (or --faceworld)")
    p.add_argument("--root", required=True, help="preprocessed frames (<root>/test/<id>/<video>/...)")
    p.add_argument("--checkpoint", default=None, help="training checkpoint; default: the released weights")
    p.add_argument("--hypernet", default=None, help="released hypernetwork.pt (default: registry path)")
    p.add_argument("--modes", default="self,cross")
    p.add_argument("--num-pairs", type=int, default=1000, help="cross-reenactment pairs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N pairs of each mode")
    p.add_argument("--ranges", default=None, help="expression ranges .npy for the normalised AED")
    p.add_argument("--num-expressions", type=int, default=20, help="DECA expression coefficients in the AED")
    p.add_argument("--no-fid", action="store_true")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = p.parse_args(argv)
    net = build_net(a.checkpoint, a.hypernet)
    size = net.generator.size
    try:
        lpips = load_lpips().to(a.device)
    except MissingWeightsError as err:
        print(f"[hyperreenact] LPIPS skipped: {err}")
        lpips = None
    fid = None if a.no_fid else str(resolve("fid_inception"))
    results = {}
    for mode in a.modes.split(","):
        ds = EvaluationPairs(a.root, "test", size, mode=mode, num_pairs=a.num_pairs, seed=a.seed)
        if a.limit:
            ds = torch.utils.data.Subset(ds, range(min(a.limit, len(ds))))
        loader = DataLoader(ds, batch_size=a.batch_size, num_workers=4)
        results[mode] = evaluate(net, loader, mode, lpips, fid, a.ranges, a.device, num_expressions=a.num_expressions)
    print(format_table(results))
    if a.out:
        Path(a.out).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
