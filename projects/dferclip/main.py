"""DFER-CLIP command line: ``python projects/dferclip/main.py {fit,validate,test,predict} --config ...``."""

from common.callbacks.confusion import ConfusionMatrixLogger
from common.cli import cli_main
from projects.dferclip.data import DFERDataModule
from projects.dferclip.module import DFERCLIPModule


def main(args=None, run: bool = True):
    """Run the CLI (``args`` replaces ``sys.argv[1:]``); returns the ``PaperlabCLI``."""
    return cli_main(
        DFERCLIPModule,
        DFERDataModule,
        project="dferclip",
        monitor="val/war",
        mode="max",
        args=args,
        run=run,
        extra_callbacks=[ConfusionMatrixLogger()],
    )


if __name__ == "__main__":
    main()
