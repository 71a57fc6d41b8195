"""The kind registry is the one table: every registered kind is offered by `python -m core.training --kind`,
accepted by the sweep's `--kinds` and planned at its stage by `--plan`, and the report can tell the kinds
apart. A consumer with a list of its own that forgot a kind fails here."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from core.training import registry
from core.training.__main__ import parser as training_parser
from conftest import ROOT


def test_every_registered_kind_is_offered_by_the_training_cli_and_an_unknown_one_is_refused(capsys):
    for kind in registry.names():
        assert training_parser().parse_args(["--kind", kind, "--out", "x"]).kind == kind
    with pytest.raises(SystemExit):
        training_parser().parse_args(["--kind", "mtl_unregistered", "--out", "x"])
    assert "mtl_unregistered" in capsys.readouterr().err


def test_every_registered_kind_is_planned_by_the_sweep_at_its_stage(tmp_path):
    kinds = registry.names()
    r = subprocess.run([sys.executable, str(ROOT / "sweeps" / "ratio_grid.py"), "--plan", "--kinds", ",".join(kinds),
                        "--storage", str(tmp_path / "store"), "--data-root", str(tmp_path / "data")],
                       capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    planned = {}
    for n, listed in re.findall(r"^\s*stage (\d+): (.*)$", r.stdout, flags=re.M):
        for k in re.findall(r"(\w+) x\d+", listed):
            planned[k] = int(n)
    assert planned == {k: registry.stage(k) for k in kinds}, r.stdout
    assert not (tmp_path / "store").exists() and not (tmp_path / "data").exists()   # a plan writes nothing


def test_every_kind_has_its_own_label_and_colour_in_the_report():
    t = registry.table()
    for what in ("label", "color"):
        values = [getattr(r, what) for r in t.values()]
        assert len(set(values)) == len(values), f"two kinds share a {what}: {sorted(values)}"
    # every comparison a recipe names is a registered kind
    for k, r in t.items():
        for ref in (r.upstream, r.twin, *r.explained_by):
            assert ref is None or ref in t, f"{k} names {ref!r}, which is not registered"
        for ref in r.explained_by:
            assert t[ref].stands_for, f"{ref} explains {k} but does not say what it stands for"
