"""docs/architecture.md's walk of one estimate names real code: every ``path.py: name`` (or
``path.py: Class.method``) reference in it resolves to a module attribute."""
from __future__ import annotations

import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REF = re.compile(r"`((?:[a-z_]+/)*[a-z_]+)\.py: ([A-Za-z_][A-Za-z0-9_.]*)`")


def test_every_hop_of_the_walk_exists():
    text = (ROOT / "docs" / "architecture.md").read_text()
    walk = text[text.index("## One estimate, from the YAML"):]
    refs = REF.findall(walk)
    assert len(refs) >= 30, refs      # the walk names each hop; a rewrite that drops them fails here
    missing = []
    for path, name in refs:
        mod = importlib.import_module("lmi_distributed." + path.replace("/", "."))
        obj = mod
        for part in name.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                missing.append(f"{path}.py: {name}")
                break
    assert not missing, missing
