"""Every hostile input of tests/hostile_cases.py against every surface that exists (CLI, API).

CLI: exit 2 and exactly one 'omniseg: error:' line (no traceback) for a refused input; exit 0 and
nothing on stderr but the expected 'omniseg: warning:' line for an accepted one.
API: the documented omniseg exception, or a right result (and the expected warning, no other).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

import omniseg
from conftest import REPO_ROOT
from hostile_cases import CASES, PENDING_ROWS, Case, Ctx, markdown_table
from hostile_corpus import Corpus
from omniseg.cli import main
from omniseg.errors import MultiFrameWarning, OmnisegError

CLI_CASES = [c for c in CASES if c.cli is not None]
API_CASES = [c for c in CASES if c.api is not None]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, tiny_model_dir) -> Corpus:
    return Corpus(tmp_path_factory.mktemp("hostile"), tiny_model_dir)


@pytest.fixture(scope="module")
def segmenter(tiny_model_dir, text_encoder):
    return omniseg.load(tiny_model_dir)


@pytest.fixture
def ctx(corpus, tiny_model_dir, segmenter, tmp_path, monkeypatch) -> Ctx:
    return Ctx(corpus, str(tiny_model_dir), str(tmp_path / "out"), segmenter, monkeypatch)


@pytest.fixture
def one_model_load(monkeypatch, segmenter, tiny_model_dir):
    """The CLI loads the tiny model once per module, not once per case (other model dirs load for real)."""
    real = omniseg.load

    def load(model=None, text_encoder=None, max_size=512, **backends):
        plain = not any(backends.values())  # no --masks/--embed/--runtime: the native model itself
        if plain and model is not None and Path(model) == Path(tiny_model_dir) and max_size == segmenter.max_size:
            return segmenter
        return real(model, text_encoder, max_size, **backends)

    monkeypatch.setattr(omniseg, "load", load)


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("case", CLI_CASES, ids=[c.id for c in CLI_CASES])
def test_cli(case: Case, ctx: Ctx, capsys, one_model_load) -> None:
    if case.setup:
        case.setup(ctx)
    code, _, err = run_cli(case.cli(ctx), capsys)
    lines = err.strip().splitlines()
    assert "Traceback" not in err, err
    if case.error is not None:
        assert code == 2, (code, err)
        assert len(lines) == 1 and lines[0].startswith("omniseg: error:"), err
        assert case.match in lines[0], lines[0]
    else:
        assert code == 0, err
        expected = ["omniseg: warning:"] if case.warns else []
        assert [line[: len("omniseg: warning:")] for line in lines] == expected, err
        if case.warns:
            assert case.match in lines[0], lines[0]
        if case.cli_check:
            case.cli_check(ctx)
    if case.after:
        case.after(ctx)


@pytest.mark.parametrize("case", API_CASES, ids=[c.id for c in API_CASES])
def test_api(case: Case, ctx: Ctx) -> None:
    if case.setup:
        case.setup(ctx)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if case.error is not None:
            with pytest.raises(case.error, match=re.escape(case.match)) as info:
                case.api(ctx)
            assert isinstance(info.value, OmnisegError)
        else:
            result = case.api(ctx)
            if case.check:
                case.check(ctx, result)
    ours = [w for w in caught if issubclass(w.category, MultiFrameWarning)]
    pillow = [w for w in caught if "PIL" in w.filename]
    assert not pillow, [str(w.message) for w in pillow]
    if case.warns:
        assert ours and all(case.match in str(w.message) for w in ours)  # once per read of the file
    else:
        assert not ours
    if case.after:
        case.after(ctx)


def test_every_case_has_a_surface_and_a_server_entry() -> None:
    ids = [c.id for c in CASES] + [row[0] for row in PENDING_ROWS]
    assert len(ids) == len(set(ids)), "case ids must be unique"
    assert len(CASES) >= 40
    for case in CASES:
        assert case.cli is not None or case.api is not None, case.id
        assert case.server, case.id  # 'pending #7' until the server lands, then its expectation
        assert case.error is not None or case.outcome, f"{case.id}: say what the right result is"


def test_reliability_md_has_the_table() -> None:
    """RELIABILITY.md shows exactly the cases the tests run (regenerate: python tests/hostile_cases.py)."""
    text = (REPO_ROOT / "RELIABILITY.md").read_text(encoding="utf-8")
    assert markdown_table() in text
