"""`lmi-distributed` command: subcommands are registered by small modules in this package.

Each subcommand module exposes `register(subparsers)`, which adds its parser and sets
`func(args) -> int`. Heavy imports (ray, torch, zarr) happen inside `func`, so `--help` is fast.

Exit codes: 0 success; 2 a user's mistake (bad config, missing file, wrong format; one
``error:`` line, no traceback); 3 finished but a result is not ok (``estimate``: status not ok;
``run``: the study is not complete).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

# module name in lmi_distributed.cli -> registers one or more subcommands
SUBCOMMAND_MODULES = ("estimate", "ingest", "ls", "plan", "run", "status", "report")

EPILOG = """\
examples:
  lmi-distributed estimate x.npy y.npy --permutations 100
  lmi-distributed ingest cells.h5ad data/store.zarr --name rna --preprocess expression
  lmi-distributed ls data/store.zarr
  lmi-distributed plan configs/demo.yaml
  lmi-distributed run configs/demo.yaml
  lmi-distributed status results/demo
  lmi-distributed report results/demo

exit codes: 0 ok; 2 user error (one 'error:' line); 3 a result is not ok (estimate status,
incomplete study)"""


def build_parser() -> argparse.ArgumentParser:
    """The ``lmi-distributed`` parser with every subcommand registered."""
    from lmi_distributed import __version__

    parser = argparse.ArgumentParser(
        prog="lmi-distributed",
        description="Latent mutual information estimation at scale.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"lmi-distributed {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(f"lmi_distributed.cli.{name}").register(sub)
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
