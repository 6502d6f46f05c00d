"""Worker choice: never request GPUs the cluster lacks; fail clearly when a GPU is required."""
import copy

import pytest

from lmi_distributed.engine.config import parse_study
from lmi_distributed.engine.runner import choose_workers
from lmi_distributed.errors import ConfigError

RAW = {"name": "t", "data": {"store": "s"}, "variables": ["A", "B"], "pairs": {"all_pairs_of": "all"},
       "output": {"path": "o"}}


def _cfg(**res):
    raw = copy.deepcopy(RAW)
    raw["resources"] = res
    return parse_study(raw)


def test_cpu_fallback_when_no_gpu():
    c = choose_workers(_cfg(), {"CPU": 2.0}, n_batches=10)
    assert not c.use_gpu and c.num_gpus == 0 and c.n_workers == 2 and "no GPU" in c.message


def test_require_gpu_and_no_fallback_fail_clearly():
    with pytest.raises(ConfigError, match="require_gpu.*0 GPU"):
        choose_workers(_cfg(require_gpu=True), {"CPU": 8.0}, 10)
    with pytest.raises(ConfigError, match="cpu_fallback"):
        choose_workers(_cfg(cpu_fallback=False), {"CPU": 8.0}, 10)


def test_gpu_workers_fractional_and_capped():
    c = choose_workers(_cfg(gpus_per_worker=0.5), {"CPU": 32.0, "GPU": 4.0}, 100)
    assert c.use_gpu and c.n_workers == 8 and c.num_gpus == 0.5
    c = choose_workers(_cfg(workers=3), {"CPU": 32.0, "GPU": 4.0}, 100)
    assert c.n_workers == 3
    c = choose_workers(_cfg(), {"CPU": 32.0, "GPU": 4.0}, 2)  # no more workers than batches
    assert c.n_workers == 2
    c = choose_workers(_cfg(gpus_per_worker=0, cpus_per_worker=2, torch_threads=2), {"CPU": 8.0, "GPU": 4.0}, 100)
    assert not c.use_gpu and c.n_workers == 4 and c.torch_threads == 2


def test_engine_package_worker_and_study_data_do_not_import_ray():
    import subprocess
    import sys

    code = ("import sys, lmi_distributed.engine, lmi_distributed.engine.worker, lmi_distributed.engine.study_data, lmi_distributed.engine.aggregate, "
            "lmi_distributed.cli.run, lmi_distributed.cli.plan; print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
