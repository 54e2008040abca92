"""StyleGAN2 command line: ``python projects/stylegan2/main.py {fit,validate} --config projects/stylegan2/configs/X.yaml``."""

from common.cli import cli_main
from projects.stylegan2.data import StyleGAN2DataModule
from projects.stylegan2.module import StyleGAN2Module


def main(args=None):
    return cli_main(StyleGAN2Module, StyleGAN2DataModule, project="stylegan2", args=args)


if __name__ == "__main__":
    main()
