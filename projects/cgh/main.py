"""CGH / ReSSL pretraining: ``python projects/cgh/main.py fit --config projects/cgh/configs/cifar10_cgh.yaml``."""

from common.cli import cli_main
from projects.cgh.data import CGHDataModule
from projects.cgh.module import CGHModule


def main(args=None):
    return cli_main(CGHModule, CGHDataModule, project="cgh", monitor=None, args=args)


if __name__ == "__main__":
    main()
