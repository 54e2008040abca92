"""Linear probe: ``python projects/cgh/linear_main.py fit --config projects/cgh/configs/cifar10_linear.yaml
--model.pretrained <pretraining last.ckpt>``."""

from common.cli import cli_main
from projects.cgh.data import CGHDataModule
from projects.cgh.linear import CGHLinearProbe


def main(args=None):
    return cli_main(CGHLinearProbe, CGHDataModule, project="cgh", monitor="val/acc1", mode="max", args=args)


if __name__ == "__main__":
    main()
