"""`lmi-distributed run CONFIG`: run (or resume) a study on Ray.

With no --address (and no RAY_ADDRESS), an embedded local Ray is started and shut down.
"""
from __future__ import annotations

import argparse


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", default=None,
                   help="Ray address (e.g. 'auto', 'ray://host:10001'); default: RAY_ADDRESS if set, else an embedded local Ray")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the embedded local Ray (default: all)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="override a config value (YAML), e.g. --set output.path=/tmp/out --set replicates=3")
    p.add_argument("--output", default=None, help="shorthand for --set output.path=DIR")
    p.add_argument("--overwrite", action="store_true",
                   help="delete results in output.path that belong to a study with other settings")
    p.add_argument("--max-batches", type=int, default=None, help="stop after N batches (rerun resumes)")
    p.add_argument("--progress-every", type=float, default=10.0, help="seconds between progress lines")
    p.add_argument("--force-unlock", action="store_true",
                   help="take over output.path's lock even if another run seems to hold it (only when that run is gone)")


def load_from_args(args):
    """The study of ``args.config`` with ``--set``/``--output`` applied; ConfigError on any mistake
    (a file that is not UTF-8 text or a ``--set`` value that is not YAML included)."""
    import yaml

    from lmi_distributed.engine.config import load_study
    from lmi_distributed.errors import ConfigError

    overrides = list(args.overrides or [])
    if getattr(args, "output", None):
        overrides.append(f"output.path={args.output}")
    try:
        return load_study(args.config, overrides)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{args.config}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set: a value is not valid YAML ({exc})") from None


def _run(args) -> int:
    from lmi_distributed.engine.runner import main_exit_code, run_study

    cfg = load_from_args(args)
    summary = run_study(cfg, address=args.address, num_cpus=args.num_cpus, overwrite=args.overwrite,
                        progress_every=args.progress_every, max_batches=args.max_batches,
                        force_unlock=args.force_unlock)
    print(f"results: {summary.get('out_dir')}")
    return main_exit_code(summary)


def register(subparsers) -> None:
    p = subparsers.add_parser("run", help="run or resume a study (YAML) on Ray",
                              description="Run or resume a study on a Ray cluster (embedded local Ray by default).")
    p.add_argument("config", help="study YAML (see configs/demo.yaml)")
    add_run_arguments(p)
    p.set_defaults(func=_run)
