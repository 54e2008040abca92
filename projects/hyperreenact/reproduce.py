"""``make reproduce-hyperreenact``: check every artifact and the VoxCeleb1 test frames, then evaluate the released
weights and print our table beside the paper's.

Without the files it stops at once, listing each missing item and where it goes.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from projects.hyperreenact.evaluate import format_table
from projects.hyperreenact.evaluate import main as evaluate_main

ARTIFACTS = (
    "hyperreenact_stylegan2_voxceleb",
    "hyperreenact_e4e_voxceleb",
    "hyperreenact_hypernetwork",
    "hyperreenact_arcface",
    "deca_model",
    "lpips_alexnet_backbone",
    "fid_inception",
)
DATA_ENV = "HYPERREENACT_DATA"
DEFAULT_DATA = "data/voxceleb1_hyperreenact"
# The paper's tables could not be read when this was written (the spec's corpus held only the abstract);
# copy Table 1 of arXiv 2307.10797 here as {"row name": {"csim": ..., "lpips": ..., ...}} to print it.
PAPER_TABLE: dict[str, dict[str, float]] = {}


def check(root: Path) -> list[str]:
    """Every missing item with where it goes (empty when all is present)."""
    from common.weights import REGISTRY, default_path, describe

    problems = []
    for name in ARTIFACTS:
        if not default_path(name).is_file():
            problems.append(f"missing {REGISTRY[name].filename}:\n{describe(name)}")
    try:
        import facenet_pytorch

        data = Path(facenet_pytorch.__file__).parent / "data"
        if not all((data / f).is_file() for f in ("pnet.pt", "rnet.pt", "onet.pt")):
            problems.append(f"MTCNN detector weights missing from {data} (reinstall facenet-pytorch==2.5.3)")
    except ImportError:
        problems.append("face detector: the facenet-pytorch package (MTCNN weights ship in its wheel) is not installed")
    test = root / "test"
    if not test.is_dir() or not any(test.rglob("meta.npz")):
        problems.append(
            f"missing VoxCeleb1 test frames: {test}/<identity>/<video>/frames/*.png + meta.npz\n"
            f"  make them with: python -m projects.hyperreenact.preprocess --videos <VoxCeleb1 clips> --out {root}\n"
            f"  (clips as <identity>/<youtube id>/<clip>.mp4; VoxCeleb1: https://www.robots.ox.ac.uk/~vgg/data/voxceleb/; "
            f"set ${DATA_ENV} or --root for another folder)"
        )
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Reproduce HyperReenact's VoxCeleb1 evaluation with the released weights")
    p.add_argument("--root", default=os.environ.get(DATA_ENV, DEFAULT_DATA))
    p.add_argument("--num-pairs", type=int, default=1000)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=8)
    a = p.parse_args(argv)
    problems = check(Path(a.root))
    if problems:
        print(f"[hyperreenact] cannot reproduce: {len(problems)} item(s) missing\n")
        print("\n\n".join(problems))
        return 2
    args = ["--root", a.root, "--num-pairs", str(a.num_pairs), "--batch-size", str(a.batch_size)]
    if a.limit:
        args += ["--limit", str(a.limit)]
    results = evaluate_main(args + ["--out", str(Path(a.root) / "hyperreenact_results.json")])
    print()
    print(format_table(results, PAPER_TABLE or None))
    if not PAPER_TABLE:
        print(
            "\npaper numbers: not transcribed (the paper body was not readable when this was written); copy "
            "Table 1 of arXiv 2307.10797 into projects/hyperreenact/reproduce.py::PAPER_TABLE"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
