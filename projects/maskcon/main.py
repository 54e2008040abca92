"""MaskCon command line: ``python -m projects.maskcon.main {fit,validate,test} --config projects/maskcon/configs/X.yaml``."""

from common.cli import cli_main
from projects.maskcon.data import MaskConDataModule
from projects.maskcon.module import MaskConModule


def main(args=None):
    return cli_main(MaskConModule, MaskConDataModule, project="maskcon", monitor="val/recall@1", mode="max", args=args)


if __name__ == "__main__":
    main()
