import copy
from pathlib import Path

import pytest
import yaml

from lmi_distributed.engine.config import load_study, parse_study
from lmi_distributed.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
BASE = {"name": "t", "data": {"store": "s.zarr"}, "variables": ["A", "B", "C"],
        "pairs": {"all_pairs_of": ["A", "B", "C"]}, "output": {"path": "out"}}


def _err(mod: dict) -> str:
    raw = copy.deepcopy(BASE)
    raw.update(mod)
    with pytest.raises(ConfigError) as ei:
        parse_study(raw)
    return str(ei.value)


def test_valid_and_defaults_are_the_papers():
    cfg = parse_study(copy.deepcopy(BASE))
    assert cfg.pair_list() == [("A", "B"), ("A", "C"), ("B", "C")]
    e = cfg.estimator
    assert (e.latent_dim, e.hidden, e.batch_size, e.lr, e.adam_eps, e.max_epochs, e.patience, e.k) == \
        (8, None, 512, 1e-4, 1e-7, 300, 30, 3)
    assert cfg.variable("A").matrix == "A"


@pytest.mark.parametrize("mod, path, expect", [
    ({"resources": {"gpus_per_worker": "lots"}}, "resources.gpus_per_worker", "number"),
    ({"resources": {"gpus_per_worker": 1.5}}, "resources.gpus_per_worker", "fraction"),
    ({"resources": {"workers": 0}}, "resources.workers", "positive integer or 'auto'"),
    ({"resources": {"pairs_per_batch": 0}}, "resources.pairs_per_batch", "greater than or equal to 1"),
    ({"resources": {"typo": 1}}, "resources.typo", "unknown key"),
    ({"estimator": {"lr": -1}}, "estimator.lr", "greater than 0"),
    ({"estimator": {"lr": ".inf"}}, "estimator.lr", "number"),
    ({"estimator": {"lr": "fast"}}, "estimator.lr", "number"),
    ({"estimator": {"lr": float("nan")}}, "estimator.lr", "finite number"),
    ({"estimator": {"ksg_backend": "kdtree"}}, "estimator.ksg_backend", "'auto', 'tree', 'tiled' or 'cupy'"),
    ({"estimator": {"restore_best": "maybe"}}, "estimator.restore_best", "boolean"),
    ({"estimator": {"epochs": 3}}, "estimator.epochs", "unknown key"),
    ({"estimator": {"device": "cuda"}}, "estimator", "set per worker by the engine"),
    ({"variables": [{"name": "A", "matrix": "m", "where": "x / 0 > 1"}, "B"]}, "variables[0].where", "zero"),
    ({"variables": [{"name": "A", "matrix": "m", "where": "'a' * 10**9 == 'a'"}, "B"]}, "variables[0].where", "variable 'A'"),
    ({"replicates": 0}, "replicates", "greater than or equal to 1"),
    ({"nulls": {"latent_permutations": -5}}, "nulls.latent_permutations", "greater than or equal to 0"),
    ({"pairing": {"rule": "magic"}}, "pairing.rule", "'aligned', 'join' or 'grouped'"),
    ({"pairs": {"explicit": [["A", "Z"]]}}, "pairs.explicit[0][1]", "one of the variables"),
    ({"pairs": {"explicit": [["A", "A"]]}}, "pairs.explicit[0]", "two different variables"),
    ({"pairs": {"x_set": ["A"]}}, "pairs", "'x_set' and 'y_set' together"),
    ({"pairs": {"explicit": [["A", "B"]], "all_pairs_of": "all"}}, "pairs", "exactly one of"),
    ({"pairs": {"x_set": ["A"], "y_set": ["Q"]}}, "pairs.y_set[0]", "one of the variables"),
    ({"variables": [{"name": "a/b", "matrix": "m"}]}, "variables[0].name", "variable name"),
    ({"variables": ["A", "A", "B", "C"]}, "variables[1].name", "unique"),
    ({"output": {}}, "output.path", "missing required key"),
    ({"significance": {"p_null": "bogus"}}, "significance.p_null", "retrain_shuffles"),
])
def test_errors_name_key_path_and_expectation(mod, path, expect):
    msg = _err(mod)
    assert f"  {path}: " in msg, msg
    assert expect in msg, msg


def test_top_level_and_yaml_errors(tmp_path):
    with pytest.raises(ConfigError, match="expected a mapping"):
        parse_study([1, 2])
    f = tmp_path / "bad.yaml"
    f.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_study(f)
    with pytest.raises(ConfigError, match="not found"):
        load_study(tmp_path / "missing.yaml")
    f.write_text("name: x\ndata: {store: s}\nvariables: [A, B]\npairs: {all_pairs_of: all}\n"
                 "output: {path: o}\npairing: {rule: aligned, on: ids}\n")
    with pytest.raises(ConfigError, match='quote it'):
        load_study(f)


def test_shipped_configs_load_and_overrides(tmp_path):
    for f in sorted((ROOT / "configs").glob("*.yaml")):
        cfg = load_study(f)
        assert cfg.pair_list()
    cfg = load_study(ROOT / "configs" / "demo.yaml", ["output.path=/tmp/x", "replicates=3", "estimator.hidden=8"])
    assert cfg.output.path == "/tmp/x" and cfg.replicates == 3 and cfg.estimator.hidden == 8
    with pytest.raises(ConfigError, match="replicates"):
        load_study(ROOT / "configs" / "demo.yaml", ["replicates=zero"])


def test_yaml_exponent_without_dot_is_a_number():
    # YAML 1.1 (PyYAML) reads `lr: 1e-3` as the string "1e-3"; the settings model reads it as 0.001
    assert yaml.safe_load("lr: 1e-3")["lr"] == "1e-3"
    cfg = load_study(ROOT / "configs" / "demo.yaml", ["output.path=/tmp/x", "estimator.lr=1e-3"])
    assert cfg.estimator.lr == 0.001


def test_pair_forms():
    raw = copy.deepcopy(BASE)
    raw["pairs"] = {"x_set": ["A", "B"], "y_set": ["B", "C"]}
    assert parse_study(raw).pair_list() == [("A", "B"), ("A", "C"), ("B", "C")]
    raw["pairs"] = {"explicit": [["C", "A"], ["C", "A"], ["A", "B"]]}
    assert parse_study(raw).pair_list() == [("C", "A"), ("A", "B")]
    raw["pairs"] = {"all_pairs_of": "all"}
    assert len(parse_study(raw).pair_list()) == 3


def test_fingerprint_tracks_numbers_not_resources():
    a = parse_study(copy.deepcopy(BASE))
    raw = copy.deepcopy(BASE)
    raw["resources"] = {"pairs_per_batch": 3, "workers": 7}
    raw["replicates"] = 4
    assert parse_study(raw).fingerprint() == a.fingerprint()
    raw["seed"] = 1
    assert parse_study(raw).fingerprint() != a.fingerprint()


def test_new_optional_settings_leave_existing_fingerprints_alone():
    """A study written before the workflows existed resumes: the demo's fingerprint is the one
    its study.json recorded then (82a76b3), and turning attribution on changes no task's number,
    so it keeps the fingerprint (resume recomputes only the tasks without arrays)."""
    paper = ["estimator.contrastive_weight=0", "estimator.ksg_gaussianize=false", "estimator.ksg_noise=0",
             "estimator.view=latents"]  # PAPER
    cfg = load_study(ROOT / "configs" / "demo.yaml", paper)
    assert cfg.fingerprint() == "1edc4039d35781eae44a"
    # today's defaults (InfoNCE term, Gaussianised latents) change numbers: another fingerprint
    assert load_study(ROOT / "configs" / "demo.yaml").fingerprint() != cfg.fingerprint()
    assert load_study(ROOT / "configs" / "demo.yaml", paper + ["estimator.attribution=true"]).fingerprint() == \
        cfg.fingerprint()
    assert load_study(ROOT / "configs" / "demo.yaml", paper + ["estimator.lr=0.002"]).fingerprint() != cfg.fingerprint()
    # the contrastive term (beyond the paper) changes numbers only when its weight is not 0
    assert load_study(ROOT / "configs" / "demo.yaml", paper + ["estimator.contrastive_temperature=1.0"]
                      ).fingerprint() == cfg.fingerprint()
    assert load_study(ROOT / "configs" / "demo.yaml", paper + ["estimator.contrastive_weight=0.5"]).fingerprint() != \
        cfg.fingerprint()


def test_a_study_computed_with_the_paper_estimator_says_how_to_resume(tmp_path):
    """Resuming a study whose results were computed with the paper's estimator (the default before
    issue 11) under today's defaults is refused, and the error names the four settings to add; one
    computed with the session-5 default (before ``view``) names ``view: latents`` alone, one computed
    with the session-7 default (before ``view_bias``) ``view_bias: none`` alone."""
    from lmi_distributed.engine.results import ResultStore
    from lmi_distributed.errors import ConfigError

    paper = ["estimator.contrastive_weight=0", "estimator.ksg_gaussianize=false", "estimator.ksg_noise=0",
             "estimator.view=latents"]
    old = load_study(ROOT / "configs" / "demo.yaml", paper)
    ResultStore(tmp_path / "out").init(old)
    with pytest.raises(ConfigError, match="'contrastive_weight: 0', 'ksg_gaussianize: false', 'ksg_noise: 0' "
                                          "and 'view: latents'"):
        ResultStore(tmp_path / "out").init(load_study(ROOT / "configs" / "demo.yaml"))
    s5 = ResultStore(tmp_path / "s5")
    s5.init(load_study(ROOT / "configs" / "demo.yaml", ["estimator.view=latents"]))
    with pytest.raises(ConfigError, match=r"before view changed\): add 'view: latents' to"):
        ResultStore(tmp_path / "s5").init(load_study(ROOT / "configs" / "demo.yaml"))
    # the session-7 default (the canonical view before its bias correction): view_bias: none alone
    s7 = ResultStore(tmp_path / "s7")
    s7.init(load_study(ROOT / "configs" / "demo.yaml", ["estimator.view_bias=none"]))
    with pytest.raises(ConfigError, match=r"before view_bias changed\): add 'view_bias: none' to"):
        ResultStore(tmp_path / "s7").init(load_study(ROOT / "configs" / "demo.yaml"))
    ResultStore(tmp_path / "s7").init(load_study(ROOT / "configs" / "demo.yaml", ["estimator.view_bias=none"]))
    # another change (the seed) gets the plain refusal, without the hint
    with pytest.raises(ConfigError) as exc:
        ResultStore(tmp_path / "out").init(load_study(ROOT / "configs" / "demo.yaml", ["seed=5"]))
    assert "ksg_gaussianize" not in str(exc.value)
    ResultStore(tmp_path / "out").init(load_study(ROOT / "configs" / "demo.yaml", paper))   # resumes
