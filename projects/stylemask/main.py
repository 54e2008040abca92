from common.cli import cli_main
from projects.stylemask.data import StyleMaskDataModule
from projects.stylemask.module import StyleMaskModule
from projects.stylemask.writer import ReenactmentWriter


def main(args=None):
    cli_main(
        StyleMaskModule,
        StyleMaskDataModule,
        project="stylemask",
        monitor="val/csim",
        mode="max",
        args=args,
        extra_callbacks=[ReenactmentWriter()],
    )


if __name__ == "__main__":
    main()
