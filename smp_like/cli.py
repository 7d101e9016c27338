"""``smp-like`` command line: ``demo`` (train a small Unet on synthetic shapes), ``train`` / ``test`` (the config-driven
pipeline on your own data), ``predict`` / ``export`` (a saved model) and ``download`` (fill the cache)."""

import argparse
import sys
from typing import List, Optional


def _download(args: argparse.Namespace) -> int:
    from smp_like.encoders import download_weights

    path = download_weights(args.encoder, args.weights)
    print(f"{args.encoder} ({args.weights}) -> {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smp-like", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    download = commands.add_parser(
        "download", help="fetch an encoder's pretrained weights into the Hub cache for offline use"
    )
    download.add_argument("encoder", help="encoder name, e.g. resnet34 or tu-resnet18")
    download.add_argument("--weights", default="imagenet", help="pretrained tag (default: imagenet)")
    download.set_defaults(handler=_download)

    from smp_like.training import demo

    demo_parser = commands.add_parser("demo", help="train a small Unet on synthetic shapes and report IoU")
    demo.add_arguments(demo_parser)
    demo_parser.set_defaults(handler=demo.run_from_args)

    from smp_like.training import commands as training_commands

    train_parser = commands.add_parser("train", help="train a model on your own data from a YAML config")
    training_commands.add_train_arguments(train_parser)
    train_parser.set_defaults(handler=training_commands.run_train)
    test_parser = commands.add_parser("test", help="score a trained run on its test split (CSV/JSON + mask PNGs)")
    training_commands.add_test_arguments(test_parser)
    test_parser.set_defaults(handler=training_commands.run_test)

    from smp_like.inference import cli_predict

    predict = commands.add_parser("predict", help="segment images, volumes and huge TIFFs with a saved model")
    cli_predict.add_predict_arguments(predict)
    predict.set_defaults(handler=cli_predict.run_predict)
    export = commands.add_parser("export", help="export a saved model to ONNX, TorchScript or an ExportedProgram")
    cli_predict.add_export_arguments(export)
    export.set_defaults(handler=cli_predict.run_export)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from smp_like.base.hub import DOWNLOAD_EXIT_CODE, HubDownloadError

    try:
        return int(args.handler(args) or 0)
    except HubDownloadError as err:  # the network or the Hub, not the command line: a different exit code
        print(f"smp-like {args.command}: download failed: {err}", file=sys.stderr)
        return DOWNLOAD_EXIT_CODE
    except (ValueError, OSError) as err:
        print(f"smp-like {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
