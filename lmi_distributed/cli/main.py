"""`lmi-distributed` command: subcommands are registered by small modules in this package.

Each subcommand module exposes `register(subparsers)`, which adds its parser and sets
`func(args) -> int`. Heavy imports (ray, torch, zarr) happen inside `func`, so `--help` is fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# module name in lmi_distributed.cli -> registers one or more subcommands
SUBCOMMAND_MODULES = ("ingest", "run", "plan")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lmi-distributed",
        description="Latent mutual information estimation at scale.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        try:
            mod = importlib.import_module(f"lmi_distributed.cli.{name}")
        except ModuleNotFoundError as exc:  # a subcommand not built yet
            if exc.name == f"lmi_distributed.cli.{name}":
                continue
            raise
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from lmi_distributed.errors import LMIError

    try:
        return int(args.func(args) or 0)
    except LMIError as exc:
        print(f"lmi-distributed {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
