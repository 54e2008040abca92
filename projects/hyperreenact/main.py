from common.cli import cli_main
from projects.hyperreenact.data import VoxCelebDataModule
from projects.hyperreenact.module import HyperReenactModule


def main(args=None):
    return cli_main(HyperReenactModule, VoxCelebDataModule, project="hyperreenact", monitor=None, args=args)


if __name__ == "__main__":
    main()
