"""Every hostile input of tests/hostile_cases.py against every surface that exists (CLI, API).

CLI: exit 2 and exactly one 'omniseg: error:' line (no traceback) for a refused input; exit 0 and
nothing on stderr but the expected 'omniseg: warning:' line for an accepted one.
API: the documented omniseg exception, or a right result (and the expected warning, no other).
Server: 4xx and a one-line JSON {"error": ...} echoing no path for a refused input; 200 for an
accepted one; plus the server's own fault rows (a raising worker, nothing written).
"""

from __future__ import annotations

import io
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO_ROOT, assert_json_error, run_cli
from hostile_cases import CASES, EXTRA_ROWS, ONE_TEST_ROWS, Case, Ctx, markdown_table
from hostile_corpus import Corpus
from omniseg import registry
from omniseg.errors import MultiFrameWarning, OmnisegError

CLI_CASES = [c for c in CASES if c.cli is not None]
API_CASES = [c for c in CASES if c.api is not None]
SERVER_CASES = [c for c in CASES if c.http is not None]
SERVER_BY_ID = {c.id: c.http for c in SERVER_CASES}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, tiny_model_dir) -> Corpus:
    return Corpus(tmp_path_factory.mktemp("hostile"), tiny_model_dir)


@pytest.fixture
def ctx(corpus, tiny_model_dir, segmenter, tmp_path, monkeypatch) -> Ctx:
    return Ctx(corpus, str(tiny_model_dir), str(tmp_path / "out"), segmenter, monkeypatch)


@pytest.fixture
def one_model_load(monkeypatch, segmenter, tiny_model_dir):
    """The CLI loads the tiny model once per module, not once per case (other model dirs load for real)."""
    real = registry.load

    def load(model=None, text_encoder=None, max_size=512, **backends):
        plain = not any(v not in (None, "torch") for v in backends.values())  # the native model itself
        same_size = max_size == segmenter.source.max_size
        if plain and model is not None and Path(model) == Path(tiny_model_dir) and same_size:
            return segmenter
        return real(model, text_encoder, max_size, **backends)

    monkeypatch.setattr(registry, "load", load)


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


@pytest.fixture(scope="module")
def client(segmenter):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from omniseg.server import create_app

    with TestClient(
        create_app(segmenter, vocabularies={}), base_url="http://localhost", raise_server_exceptions=False
    ) as c:
        yield c


def post(client, ctx: Ctx, http, names: dict[str, str] | None = None):
    """Send the corpus files of ``http`` (uploaded under ``names``, else their own file names)."""
    files = []
    for field, name in http.files:
        data = Path(ctx.f(name)).read_bytes()
        files.append((field, ((names or {}).get(name, Path(name).name), data, "application/octet-stream")))
    return client.post(http.path, files=files, data=http.data)


@pytest.mark.parametrize("case", SERVER_CASES, ids=[c.id for c in SERVER_CASES])
def test_server(case: Case, ctx: Ctx, client) -> None:
    # upload under the file's full path: the answer must not echo it
    response = post(client, ctx, case.http, {name: ctx.f(name) for _, name in case.http.files})
    if case.http.status >= 400:
        assert_json_error(response, case.http.status, str(ctx.corpus.root))
    else:
        assert response.status_code == 200, response.text
        assert str(ctx.corpus.root) not in response.text
        said = response.json().get("warnings", [])
        assert (len(said) == 1 and case.match in said[0]) if case.warns else not said, said


def test_server_survives_a_raising_worker(ctx: Ctx, client, monkeypatch) -> None:
    """Row server-worker-raises: a bug in one request is a 500 JSON (no traceback), the next is served."""
    door = client.app.state.segmenter  # the door the routes use
    real = door.segment
    calls = []

    def raise_once(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError(f"boom in {ctx.corpus.root}")
        return real(*args, **kwargs)

    monkeypatch.setattr(door, "segment", raise_once)
    request = SERVER_BY_ID["grayscale"]
    message = assert_json_error(post(client, ctx, request), 500, str(ctx.corpus.root), "boom")
    assert message == "internal error (RuntimeError)"
    assert post(client, ctx, request).status_code == 200
    assert len(calls) == 2


def test_server_writes_nothing(ctx: Ctx, segmenter, tmp_path, monkeypatch) -> None:
    """Row server-temp-dir: hostile upload names and a spooled (over 1 MB) upload leave cwd and the temp
    dir as they were."""
    import tempfile

    from fastapi.testclient import TestClient

    from omniseg.server import create_app

    work, spool = tmp_path / "cwd", tmp_path / "spool"
    work.mkdir()
    spool.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    before = {d: sorted(p.name for p in Path(d).iterdir()) for d in (work, spool, ctx.corpus.root)}
    big = np.random.default_rng(0).integers(0, 256, (700, 700, 3), dtype=np.uint8)  # ~1.5 MB PNG: spooled to disk
    buffer = io.BytesIO()
    Image.fromarray(big).save(buffer, format="PNG", compress_level=0)
    assert len(buffer.getvalue()) > 1024 * 1024
    with TestClient(create_app(segmenter, vocabularies={}), base_url="http://localhost") as client:
        for name in ("../escape.png", "../../escape.png", "/tmp/escape.png", str(work / "escape.png")):
            r = client.post("/v1/segment", files={"image": (name, buffer.getvalue())}, data={"classes": "sky,road"})
            assert r.status_code == 200, r.text
            assert "escape" not in r.text
        r = client.post("/v1/segment", files={"image": ("../escape.png", b"junk")}, data={"classes": "sky"})
        assert "escape" not in assert_json_error(r, 400, str(work))
    after = {d: sorted(p.name for p in Path(d).iterdir()) for d in (work, spool, ctx.corpus.root)}
    assert after == before
    assert not list(tmp_path.parent.glob("escape*")) and not Path("/tmp/escape.png").exists()


def test_every_case_has_a_surface_and_a_server_entry() -> None:
    ids = [c.id for c in CASES] + [row[0] for row in EXTRA_ROWS] + [row[0] for row in ONE_TEST_ROWS]
    assert len(ids) == len(set(ids)), "case ids must be unique"
    assert len(CASES) >= 40
    for case in CASES:
        assert case.cli is not None or case.api is not None, case.id
        assert case.server and "pending" not in case.server, case.id  # a status, or n/a and why
        assert (case.http is None) == case.server.startswith("n/a"), case.id
        assert case.error is not None or case.outcome, f"{case.id}: say what the right result is"


def test_reliability_md_has_the_table() -> None:
    """RELIABILITY.md shows exactly the cases the tests run (regenerate: python tests/hostile_cases.py)."""
    text = (REPO_ROOT / "RELIABILITY.md").read_text(encoding="utf-8")
    assert markdown_table() in text
