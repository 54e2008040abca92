"""The face-world reenactment benchmark, StyleMask and HyperReenact side by side.

Both projects score their method on the same held-out face-world pairs against the exact answer and write JSON
rows ``{"method", "mode", "seed", "psnr", "ssim", "nme", "landmark_px", "id_cos", "pose_err", "exp_err"}`` (one per
method, mode and pair seed; the baselines ``copy_source``, ``copy_driver`` and ``invert_truth`` included)::

    python -m projects.hyperreenact.evaluate --faceworld --out runs/faceworld_benchmark/hyperreenact.json
    python -m projects.stylemask.evaluate --faceworld --out runs/faceworld_benchmark/stylemask.json

This script prints both files side by side (mean +- standard deviation over the seeds) and checks the issue's
bar on cross-identity pairs: the method beats both copy baselines on PSNR and landmark error, its pose error is
at most half of copy-source's, and its identity cosine to the source is above copy-driver's by a clear margin
(more than 0.05 and more than twice the two spreads together). ``--run`` first runs both evaluations.

    python benchmarks/faceworld_reenactment.py [--run] [--hyperreenact FILE] [--stylemask FILE] [--seeds 0 1]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

KEYS = ("psnr", "ssim", "nme", "landmark_px", "id_cos", "pose_err", "exp_err")
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "nme": False, "landmark_px": False, "id_cos": True}
BASELINES = ("copy_source", "copy_driver", "invert_truth")
DEFAULT_DIR = Path("runs/faceworld_benchmark")
PROJECTS = ("stylemask", "hyperreenact")
CLEAR_MARGIN = 0.05


def read_rows(path: str | Path) -> list[dict]:
    """The rows of a benchmark JSON file (a list of rows, or a dict with ``rows``); errors name the file."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no benchmark results (run the evaluation with --faceworld --out {p})")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{p}: not JSON ({err})") from err
    rows = data.get("rows") if isinstance(data, dict) else data
    if not isinstance(rows, list) or not rows:
        raise ValueError(f"{p}: expected a non-empty list of rows (or a dict with 'rows')")
    for i, r in enumerate(rows):
        missing = [k for k in ("method", "mode", "seed", *KEYS) if not isinstance(r, dict) or k not in r]
        if missing:
            raise ValueError(f"{p}: row {i} lacks {missing}")
    return rows


def summarize(rows: Iterable[Mapping]) -> dict[tuple[str, str], dict]:
    """(method, mode) -> {key: mean, key_std: sample standard deviation over seeds (0 for one), seeds: n}."""
    groups: dict[tuple[str, str], list[Mapping]] = {}
    for r in rows:
        groups.setdefault((str(r["method"]), str(r["mode"])), []).append(r)
    out = {}
    for key, rs in groups.items():
        item: dict = {"seeds": len(rs)}
        for k in KEYS:
            vals = [float(r[k]) for r in rs]
            mean = sum(vals) / len(vals)
            item[k] = mean
            item[f"{k}_std"] = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
        out[key] = item
    return out


def table(results: Mapping[str, Mapping[tuple[str, str], dict]], mode: str) -> str:
    """One mode's rows: every project's method(s) and baselines, mean +- std."""
    lines = [f"{mode}-reenactment{'':10s}{'seeds':>6s}" + "".join(f"{k:>17s}" for k in KEYS)]
    for project, summary in results.items():
        for (method, m), s in sorted(summary.items(), key=lambda kv: (kv[0][0] in BASELINES, kv[0][0])):
            if m != mode:
                continue
            cells = "".join(f"{s[k]:9.4f}+-{s[k + '_std']:<6.4f}" for k in KEYS)
            lines.append(f"{(project + ': ' + method)[:33]:33s}{s['seeds']:>6d}{cells}")
    return "\n".join(lines)


def check(summary: Mapping[tuple[str, str], dict], method: str, mode: str = "cross") -> list[tuple[str, bool, str]]:
    """The issue's bar for ``method`` on ``mode`` pairs: (criterion, passed, numbers)."""
    m, src, drv = (summary.get((name, mode)) for name in (method, "copy_source", "copy_driver"))
    if m is None or src is None or drv is None:
        return [(f"{method} and both copy baselines present ({mode})", False, "missing rows")]
    res = []
    for k in ("psnr", "nme"):
        better = (lambda a, b: a > b) if HIGHER_IS_BETTER[k] else (lambda a, b: a < b)
        ok = better(m[k], src[k]) and better(m[k], drv[k])
        res.append((f"{k} better than both copies", ok, f"{m[k]:.4f} vs {src[k]:.4f} / {drv[k]:.4f}"))
    res.append(
        (
            "pose_err <= copy_source / 2",
            m["pose_err"] <= src["pose_err"] / 2,
            f"{m['pose_err']:.3f} vs {src['pose_err']:.3f} / 2",
        )
    )
    margin = m["id_cos"] - drv["id_cos"]
    need = max(CLEAR_MARGIN, 2 * (m["id_cos_std"] + drv["id_cos_std"]))
    res.append(("id_cos above copy_driver clearly", margin > need, f"+{margin:.4f} (needs > {need:.4f})"))
    return res


def run_evaluations(files: Mapping[str, Path], seeds: list[int], num_pairs: int | None) -> None:
    """Run each project's ``evaluate --faceworld`` (its shipped trained model) into ``files[project]``.

    HyperReenact draws one pair set per seed of ``seeds``; StyleMask's seeds are those its models were trained with.
    """
    for project, out in files.items():
        out.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", f"projects.{project}.evaluate", "--faceworld", "--out", str(out)]
        if project == "hyperreenact":
            cmd += ["--seeds", *map(str, seeds)]
        if num_pairs is not None:
            cmd += ["--num-pairs", str(num_pairs)]
        print("$ " + " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description="StyleMask and HyperReenact on the face world, side by side")
    p.add_argument("--run", action="store_true", help="run both evaluations first (their shipped trained models)")
    p.add_argument("--stylemask", default=str(DEFAULT_DIR / "stylemask.json"))
    p.add_argument("--hyperreenact", default=str(DEFAULT_DIR / "hyperreenact.json"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="HyperReenact's pair seeds (with --run)")
    p.add_argument("--num-pairs", type=int, default=None, help="pairs per mode and seed (default: each script's)")
    p.add_argument("--only", choices=PROJECTS, default=None, help="one project only")
    a = p.parse_args(argv)
    files = {"stylemask": Path(a.stylemask), "hyperreenact": Path(a.hyperreenact)}
    projects = [a.only] if a.only else list(PROJECTS)
    if a.run:
        run_evaluations({k: files[k] for k in projects}, a.seeds, a.num_pairs)
    results = {project: summarize(read_rows(files[project])) for project in projects}
    for mode in ("self", "cross"):
        print(table(results, mode) + "\n")
    print("psnr, ssim: against the exact answer; nme: landmark error / interocular distance (outer eye corners);")
    print("landmark_px: pixels; id_cos: identity expert, output vs source; pose_err (degrees) and exp_err")
    print("(normalised): attribute expert, output vs driver. +- is the standard deviation over seeds.\n")
    verdicts = {}
    for project in projects:
        method = next((m for m, mode in results[project] if m not in BASELINES and mode == "cross"), None)
        verdicts[project] = check(results[project], method or project)
        print(f"{project} ({method}), cross-identity pairs of held-out identities:")
        for name, ok, numbers in verdicts[project]:
            print(f"  [{'pass' if ok else 'FAIL'}] {name}: {numbers}")
    return {"results": results, "verdicts": verdicts}


if __name__ == "__main__":
    main()
