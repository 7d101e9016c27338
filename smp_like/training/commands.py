"""The ``smp-like train`` and ``smp-like test`` verbs (argument parsing and printing only)."""

import argparse
import json
import sys


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``smp-like train``."""
    parser.add_argument("--config", required=True, help="YAML config file (see docs/configuration.md)")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="dotted overrides, e.g. --set trainer.max_epochs=3 optimizer.lr=1e-4")
    parser.add_argument("--resume", action="store_true", help="continue from the run's checkpoints/last.ckpt")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config (defaults filled; a Flemme config: its native translation) "
                             "and exit without training")
    parser.add_argument("--no-test", action="store_true", help="skip the test split after training")


def add_test_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``smp-like test``."""
    parser.add_argument("--config", required=True, help="the run's YAML config")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="dotted overrides")
    parser.add_argument("--checkpoint", default=None,
                        help="'best' (default: the config's test.checkpoint, else the run's best/), 'last', a .ckpt "
                             "file, a Flemme-style ckp_*.pth or a saved model folder")
    parser.add_argument("--split", default="test", choices=("test", "val"), help="split to score (default: test)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config (a Flemme config: its native translation) and exit")


def _print_scores(result: dict) -> None:
    print(f"{result.get('split', 'test')}: {result.get('images', '?')} images")
    for name, values in (result.get("per_class") or {}).items():
        if not isinstance(values, dict):
            continue
        text = "  ".join(f"{k} {'n/a' if v is None else f'{v:.3f}'}" for k, v in values.items())
        print(f"  {name:<14} {text}")
    print("  mean           " + "  ".join(f"{k} {'n/a' if v is None else f'{v:.3f}'}"
                                           for k, v in (result.get("mean") or {}).items()
                                           if v is None or isinstance(v, (int, float))))


def run_train(args: argparse.Namespace) -> int:
    """``smp-like train``: validate, train, export ``best/``, then score the test split if the config has one."""
    from smp_like.training.config import load_config

    cfg = load_config(args.config, args.overrides)
    if args.print_config:
        sys.stdout.write(cfg.to_yaml())
        return 0
    from smp_like.training.run import train

    summary = train(cfg, resume=True if args.resume else None)
    if not summary:  # a non-zero rank of a distributed run
        return 0
    print(f"best {summary['monitor']} = {summary['best_value']} (epoch {summary['best_epoch']}); "
          f"run folder: {summary['run_dir']}")
    if cfg.data.test and not args.no_test:
        from smp_like.training.evaluate import evaluate

        _print_scores(evaluate(cfg))
    return 0


def run_test(args: argparse.Namespace) -> int:
    """``smp-like test``: score the run's best (or a named) checkpoint on a split; write CSV/JSON and mask PNGs."""
    from smp_like.training.config import load_config
    from smp_like.training.evaluate import evaluate

    cfg = load_config(args.config, args.overrides)
    if getattr(args, "print_config", False):
        sys.stdout.write(cfg.to_yaml())
        return 0
    # A Flemme test config names its weights (model_path) and output folder (seg_dir, ...): test.* here.
    checkpoint = args.checkpoint or cfg.test.checkpoint
    result = evaluate(cfg, checkpoint, args.split, out_dir=cfg.test.output_dir, device=args.device)
    from pathlib import Path

    from smp_like.training.flemme.outputs import write_test_extras

    out_dir = Path(cfg.test.output_dir) if cfg.test.output_dir else cfg.run_dir.resolve() / args.split
    result.setdefault("files", {}).update(write_test_extras(cfg, args.split, out_dir))
    _print_scores(result)
    print(f"wrote {json.dumps(result['files'])}")
    return 0
