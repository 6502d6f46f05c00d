"""`lmi-distributed` command: subcommands are registered by small modules in this package.

Each subcommand module exposes `register(subparsers)`, which adds its parser and sets
`func(args) -> int`. Heavy imports (ray, torch, zarr) happen inside `func`, so `--help` is fast.
"""
from __future__ import annotations

import argparse
import importlib
import os
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


#: OS errors that mean "this path (given by the user) cannot be used", not a bug of ours
USER_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError,
                  FileExistsError)


def user_error_message(exc: BaseException) -> str | None:
    """The one-line (or key-path list) message of a user's mistake, or None for a real bug.

    Our own errors (``LMIError``: config, data, input), OS errors about a path
    (missing, not permitted, a directory where a file was expected, ...) and YAML syntax errors
    of ``--set`` values are the user's to fix; anything else keeps its traceback (as does
    everything when ``LMI_DEBUG`` is set).
    """
    import yaml

    from lmi_distributed.errors import LMIError

    if isinstance(exc, LMIError):
        return str(exc)
    if isinstance(exc, USER_OS_ERRORS) and getattr(exc, "filename", None):
        return f"{exc.strerror or type(exc).__name__}: {exc.filename}"
    if isinstance(exc, yaml.YAMLError):
        return f"not valid YAML: {exc}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except Exception as exc:  # noqa: BLE001 - re-raised unless it is a user's mistake
        msg = user_error_message(exc)
        if msg is None or os.environ.get("LMI_DEBUG"):
            raise
        print(f"lmi-distributed {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
