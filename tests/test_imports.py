"""The house keeps its import graph clean (issue 14): no import cycles between omniseg modules,
counting imports inside functions; imports inside functions only in the CLI layer or of the
declared heavy optional packages (scripts/check_import_cycles.py)."""

from __future__ import annotations

import sys

from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "scripts"))
import check_import_cycles as checker  # noqa: E402


def test_no_import_cycles_and_no_stray_deferred_imports():
    report = checker.check()
    assert report["modules"] > 80
    assert report["cycles"] == []
    assert report["misplaced_internal"] == []
    assert report["undeclared_deferred"] == []


def test_the_checker_finds_a_cycle_hidden_in_a_function(tmp_path, monkeypatch):
    package = tmp_path / "omniseg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from omniseg.b import g\n\ndef f():\n    return g()\n")
    (package / "b.py").write_text("def g():\n    from omniseg.a import f\n    return f\n")
    (package / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from omniseg.a import f\n")
    monkeypatch.setattr(checker, "SRC", tmp_path)
    report = checker.check()
    assert report["cycles"] == [["omniseg.a", "omniseg.b"]]
    assert [(i.source, i.target) for i in report["misplaced_internal"]] == [("omniseg.b", "omniseg.a")]
    assert report["type_checking_only"] == 1
