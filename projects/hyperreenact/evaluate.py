"""Evaluation on VoxCeleb1's test videos: self-reenactment (first frame as source, every later frame a target;
CSIM, LPIPS, FID, pose and expression distances, PSNR, SSIM) and cross-reenactment (seeded random pairs of
identities; CSIM, FID, pose and expression distances), each also on the large-pose subset (source-target pose
difference over 15 degrees).

Our choices where the paper body was unreadable (see the project README): CSIM is the ArcFace cosine between
the output and the source (``csim``) and, in self-reenactment, also the target (``csim_target``), both on the
five-point aligned crops; pose distance is the mean |yaw|, |pitch|, |roll| difference (degrees) of DECA's
global pose, output vs target; expression distance is StyleMask's (jaw + 20 DECA expression coefficients,
min-max normalised when a ranges file is given, raw otherwise); the large-pose test is the largest of the
three source-target angle differences.

    python -m projects.hyperreenact.evaluate --root data/voxceleb1_hyperreenact [--checkpoint last.ckpt]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from common.face.flame import axis_angle_to_euler
from common.metrics.face import CSIM, FID, ExpressionDistance, LPIPSMetric, PoseDistance, psnr_metric, ssim_metric
from projects.hyperreenact.data import EvaluationPairs
from projects.hyperreenact.inference import build_net
from projects.hyperreenact.pretrained import load_lpips

LARGE_POSE_DEGREES = 15.0
SELF_METRICS = ("csim", "csim_target", "lpips", "fid", "apd", "aed", "psnr", "ssim")
CROSS_METRICS = ("csim", "fid", "apd", "aed")


class _Suite:
    """The metrics of one mode on one subset."""

    def __init__(self, mode: str, lpips, fid_weights, ranges, device, num_expressions: int = 20) -> None:
        self.mode = mode
        self.m: dict = {
            "csim": CSIM(),
            "apd": PoseDistance(),
            "aed": ExpressionDistance(ranges, num_expressions=num_expressions),
        }
        if mode == "self":
            self.m["csim_target"] = CSIM()
            self.m["psnr"] = psnr_metric()
            self.m["ssim"] = ssim_metric()
            if lpips is not None:
                self.m["lpips"] = LPIPSMetric(lpips)
        if fid_weights is not None:
            self.m["fid"] = FID(fid_weights)
        for v in self.m.values():
            v.to(device)
        self.n = 0

    def update(self, out: Mapping[str, Tensor], batch: Mapping[str, Tensor], mask: Tensor) -> None:
        if not bool(mask.any()):
            return
        sel = {k: v[mask] for k, v in out.items()}
        tgt = batch["target"][mask]
        self.n += int(mask.sum())
        self.m["csim"].update(sel["emb_out"], sel["emb_src"])
        self.m["apd"].update(sel["pose_out"], sel["pose_tgt"])
        self.m["aed"].update(sel["exp_out"], sel["pose_out"], sel["exp_tgt"], sel["pose_tgt"])
        if self.mode == "self":
            self.m["csim_target"].update(sel["emb_out"], sel["emb_tgt"])
            self.m["psnr"].update(sel["image"], tgt)
            self.m["ssim"].update(sel["image"], tgt)
            if "lpips" in self.m:
                self.m["lpips"].update(sel["image"], tgt)
        if "fid" in self.m:
            self.m["fid"].update(sel["image"], real=False)
            self.m["fid"].update(tgt, real=True)

    def compute(self) -> dict[str, float]:
        res = {"pairs": float(self.n)}
        if self.n == 0:
            return res
        for k, v in self.m.items():
            if k == "fid" and self.n < 2:
                continue
            res[k] = float(v.compute())
        return res


@torch.no_grad()
def evaluate(
    net: torch.nn.Module,
    loader: DataLoader,
    mode: str,
    lpips: torch.nn.Module | None = None,
    fid_weights: str | None = None,
    ranges: str | None = None,
    device: str | torch.device = "cpu",
    large_pose: float = LARGE_POSE_DEGREES,
    num_expressions: int = 20,
) -> dict[str, dict[str, float]]:
    """Metrics over ``loader`` (items of :class:`~projects.hyperreenact.data.EvaluationPairs`) for ``all`` pairs
    and the ``large_pose`` subset. ``fid_weights=None`` skips FID (it needs the Inception file).
    ``num_expressions``: DECA expression coefficients in the AED (20, StyleMask's)."""
    if mode not in ("self", "cross"):
        raise ValueError(f"mode must be 'self' or 'cross', got {mode!r}")
    net = net.to(device).eval()
    suites = {k: _Suite(mode, lpips, fid_weights, ranges, device, num_expressions) for k in ("all", "large_pose")}
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        w = batch["source_w"] if "source_w" in batch else net.invert(batch["source"])
        emb_src, f_app = net.app_encoder(batch["source"], batch["source_lm5"])
        p_tgt, f_pose = net.pose_encoder(batch["target"], batch["target_box"])
        p_src, _ = net.pose_encoder(batch["source"], batch["source_box"])
        image, _ = net.render(w, f_pose, f_app)
        image = image.clamp(-1, 1)
        emb_out, _ = net.app_encoder(image, batch["target_lm5"])
        emb_tgt, _ = net.app_encoder(batch["target"], batch["target_lm5"])
        p_out, _ = net.pose_encoder(image, batch["target_box"])
        out = {
            "image": image,
            "emb_src": emb_src,
            "emb_tgt": emb_tgt,
            "emb_out": emb_out,
            "pose_out": p_out["pose"],
            "pose_tgt": p_tgt["pose"],
            "exp_out": p_out["exp"],
            "exp_tgt": p_tgt["exp"],
        }
        diff = (axis_angle_to_euler(p_src["pose"][:, :3]) - axis_angle_to_euler(p_tgt["pose"][:, :3])).abs()
        big = diff.max(1).values > large_pose
        suites["all"].update(out, batch, torch.ones_like(big))
        suites["large_pose"].update(out, batch, big)
    return {k: s.compute() for k, s in suites.items()}


def format_table(results: Mapping[str, Mapping[str, Mapping[str, float]]], paper: Mapping | None = None) -> str:
    """Plain-text table: one row per (mode, subset), one column per metric; ``paper`` rows when given."""
    cols = ["pairs", *dict.fromkeys(SELF_METRICS + CROSS_METRICS)]
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


def main(argv: list[str] | None = None) -> dict:
    from common.weights import MissingWeightsError, resolve

    p = argparse.ArgumentParser(description="HyperReenact evaluation on VoxCeleb1 test frames")
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
