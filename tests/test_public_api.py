"""The package root: its public names, lazily loaded (importing the package does not import torch)."""
from __future__ import annotations

import subprocess
import sys

import lmi_distributed

EXPECTED = {"LMI", "estimate", "estimate_many", "pairwise", "ksg_mi", "ksg_pmi", "latent_permutation_null",
            "permutation_pvalue", "benjamini_hochberg", "LMISettings", "PAPER", "LMIResult", "LMIError", "InputError",
            "ConfigError", "DataError", "LMIWarning", "__version__"}


def test_all_names_resolve_and_are_listed():
    assert set(lmi_distributed.__all__) == EXPECTED
    listed = dir(lmi_distributed)
    for name in lmi_distributed.__all__:
        assert getattr(lmi_distributed, name) is not None, name
        assert name in listed, name


def test_names_are_the_defining_objects():
    from lmi_distributed import errors, stats
    from lmi_distributed.estimators import api, estimator, ksg, pairwise, permutation

    assert lmi_distributed.LMI is estimator.LMI
    assert lmi_distributed.estimate is api.estimate and lmi_distributed.LMIResult is api.LMIResult
    assert lmi_distributed.LMISettings is api.LMISettings
    assert lmi_distributed.pairwise is pairwise.pairwise
    assert lmi_distributed.ksg_pmi is ksg.ksg_pmi
    assert lmi_distributed.latent_permutation_null is permutation.latent_permutation_null
    assert lmi_distributed.permutation_pvalue is stats.permutation_pvalue
    assert lmi_distributed.InputError is errors.InputError
    assert issubclass(lmi_distributed.InputError, lmi_distributed.LMIError)


def test_unknown_name_is_an_attribute_error():
    try:
        lmi_distributed.no_such_thing
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_import_does_not_import_torch():
    code = ("import lmi_distributed, sys; assert 'torch' not in sys.modules; "
            # stats and errors are pure: using them must not pull torch in either
            "lmi_distributed.permutation_pvalue(1.0, [0.0]); lmi_distributed.InputError; "
            "lmi_distributed.LMISettings(); assert 'torch' not in sys.modules, 'torch imported'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
