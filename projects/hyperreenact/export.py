"""Export a face-world training checkpoint as the shipped file (float16 hypernetwork + hyperparameters)::

    python -m projects.hyperreenact.export --checkpoint runs/hyperreenact/faceworld \\
        --out pretrained/faceworld/faceworld_hyperreenact.pt

``--checkpoint`` takes a ``last.ckpt``, a run folder or the experiment folder (then its newest run).

The frozen networks (generator, e4e, experts) are not copied: they are the registry's own shipped files.
``projects.hyperreenact.module.load_module`` (and so ``inference.build_net``) reads the file back.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common.checkpoint import run_checkpoint
from common.weights import sha256sum
from projects.hyperreenact.faceworld import export_hypernet
from projects.hyperreenact.module import load_module


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description="Export a face-world HyperReenact checkpoint as the shipped file")
    p.add_argument(
        "--checkpoint",
        required=True,
        help="a face-world training checkpoint (last.ckpt), or a run or experiment folder (its newest last.ckpt)",
    )
    p.add_argument("--out", default="pretrained/faceworld/faceworld_hyperreenact.pt")
    a = p.parse_args(argv)
    ckpt = run_checkpoint(a.checkpoint)
    print(f"[hyperreenact] exporting {ckpt}")
    module = load_module(ckpt)
    out = export_hypernet(module, a.out)
    n = sum(p.numel() for p in module.net.hypernet.parameters())  # the shared hypernetwork counted once
    print(
        f"[hyperreenact] {n} hypernetwork parameters -> {out} ({out.stat().st_size / 1e6:.2f} MB, "
        f"sha256 {sha256sum(out)})"
    )
    return out


if __name__ == "__main__":
    main()
