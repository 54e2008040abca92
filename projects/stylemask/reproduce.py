"""`make reproduce-stylemask`: evaluate the released StyleMask mask network.

1. The official synthetic validation on the 100 fixed pairs of ``random_latent_codes_100.npy`` (all pairs):
   CSIM to the source, pose error (degrees) and normalised expression error to the target.
2. With ``--voxceleb DIR`` (frame folders or videos): self- and cross-reenactment of real faces (CSIM, LPIPS,
   FID, pose and expression distances), see ``projects/stylemask/evaluate.py``.
Without the artifacts it stops at once and lists every missing file, where it goes and where to get it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from common.cli import runs_root
from common.weights import default_path, describe, missing

SYNTHETIC = [
    "stylegan2_ffhq_config_f",
    "stylemask_mask_network",
    "arcface_ir_se50",
    "deca_model",
    "flame_generic_model",
    "flame_landmark_embedding",
    "stylemask_validation_codes",
    "stylemask_ffhq_ranges",
]
VOXCELEB = ["e4e_ffhq_encode", "lpips_alexnet_backbone", "fid_inception"]


def required(voxceleb: bool) -> list[str]:
    return SYNTHETIC + (VOXCELEB if voxceleb else [])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--voxceleb", help="folder of VoxCeleb test videos or frame folders (optional)")
    ap.add_argument("--cross-pairs", type=int, default=35, help="random cross-reenactment video pairs")
    ap.add_argument("--max-frames", type=int, default=None, help="frames per driving video (default: all)")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--accelerator", default="auto")
    ap.add_argument("--deca-box", default="fixed", choices=("fixed", "detector"))
    args = ap.parse_args(argv)

    if args.voxceleb and not Path(args.voxceleb).is_dir():
        sys.exit(f"reproduce-stylemask: --voxceleb folder not found: {args.voxceleb}")
    absent = missing(required(bool(args.voxceleb)))
    if absent:
        print(f"reproduce-stylemask: {len(absent)} required file(s) missing; nothing was run.\n")
        for name in absent:
            print(describe(name) + "\n")
        sys.exit(2)

    import torch
    from lightning.pytorch import Trainer

    from projects.stylemask.data import StyleMaskDataModule
    from projects.stylemask.module import StyleMaskModule

    module = StyleMaskModule(
        face_models="real",
        deca_box=args.deca_box,
        inverter="e4e" if args.voxceleb else "none",
        e4e_path=str(default_path("e4e_ffhq_encode")) if args.voxceleb else None,
        mask_net_path=str(default_path("stylemask_mask_network")),
        expression_ranges_path=str(default_path("stylemask_ffhq_ranges")),
    )
    dm = StyleMaskDataModule(val_pairs="official", val_batch_size=args.batch_size)
    out_dir = runs_root() / "stylemask" / "reproduce"
    trainer = Trainer(accelerator=args.accelerator, devices=1, logger=False, default_root_dir=str(out_dir))
    results: dict = {"synthetic": {k: float(v) for k, v in trainer.test(module, datamodule=dm)[0].items()}}
    if args.voxceleb:
        from common.face.lpips import LPIPS
        from common.metrics.face import FID
        from projects.stylemask.evaluate import evaluate_voxceleb

        device = module.device if module.device.type != "cpu" else torch.device(trainer.strategy.root_device)
        module = module.to(device)
        results["voxceleb"] = evaluate_voxceleb(
            module,
            args.voxceleb,
            num_cross_pairs=args.cross_pairs,
            batch_size=args.batch_size,
            lpips=LPIPS("alex").to(device),
            fid=FID().to(device),
            max_frames=args.max_frames,
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    print("\nStyleMask, released mask network")
    for section, vals in results.items():
        flat = vals if section == "synthetic" else {f"{k}/{m}": v for k, d in vals.items() for m, v in d.items()}
        for k, v in flat.items():
            print(f"  {section:<10} {k:<28} {v:.4f}")
    print(f"results written to {out_dir / 'results.json'}")
    return results


if __name__ == "__main__":
    main()
