"""The web page in a real browser: headless Chromium (Debian's /usr/bin/chromium, driven by Playwright)
against a live `omniseg serve` started on a free localhost port (a tiny random model: these tests
check the page and the API work together, not segmentation quality).

Missing Chromium or Playwright is a failure with the fix in the message (`make test` installs both);
OMNISEG_SKIP_BROWSER=1 skips these tests on purpose.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import make_scene

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = os.environ.get("OMNISEG_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
SCREENSHOTS = os.environ.get("OMNISEG_SCREENSHOTS")  # a folder: keep pictures of the page for a look
STARTUP_S = 600  # the machine may be busy: importing torch and loading the text encoder can take minutes
CLASSES = "sky, road, car"

if os.environ.get("OMNISEG_SKIP_BROWSER") == "1":
    pytest.skip("OMNISEG_SKIP_BROWSER=1", allow_module_level=True)


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    """A live `omniseg serve` subprocess; yields its base URL."""
    from omniseg.server.launch import live_server

    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    args = ["--model", str(tiny_model_dir)]
    try:
        with live_server(args, log_path, STARTUP_S, env={"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}) as live:
            yield live.base_url
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the browser tests need the Python package playwright: pip install -e '.[dev]' (make test does)")
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        pytest.fail(
            f"the browser tests need Chromium at {CHROMIUM}: apt-get install chromium (make test does, as root); "
            "set OMNISEG_SKIP_BROWSER=1 to skip them"
        )
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(accept_downloads=True, viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.set_default_timeout(180_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server + "/")
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture(scope="module")
def street(tmp_path_factory) -> Path:
    image, _ = make_scene(np.random.default_rng(7), height=120, width=160)
    path = tmp_path_factory.mktemp("web") / "street.png"
    Image.fromarray(image).save(path)
    return path


def screenshot(page, name: str) -> None:
    if SCREENSHOTS:
        page.screenshot(path=str(Path(SCREENSHOTS) / f"web_{name}.png"))


def start_waiting(page) -> None:
    page.evaluate("document.getElementById('status').textContent = ''")


def wait_done(page) -> None:
    page.wait_for_function("/^(Done|Failed)/.test(document.getElementById('status').textContent)")
    assert page.inner_text("#status").startswith("Done"), page.inner_text("#error")


def overlay_pixels(page) -> int:
    """How many pixels of the overlay canvas are painted."""
    return page.evaluate(
        """() => { const c = document.getElementById('overlay');
                   const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                   let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; }"""
    )


def image_point(page, x: int, y: int) -> tuple[float, float]:
    """Page coordinates of image pixel (x, y) (the canvas may be scaled)."""
    box = page.locator("#marks").bounding_box()
    width, height = page.evaluate("[state.width, state.height]")
    return box["x"] + (x + 0.5) * box["width"] / width, box["y"] + (y + 0.5) * box["height"] / height


def api_label_map(server: str, path: Path) -> np.ndarray:
    import httpx

    with open(path, "rb") as fh:
        r = httpx.post(f"{server}/v1/segment?format=png", files={"image": fh}, data={"classes": CLASSES}, timeout=300)
    r.raise_for_status()
    return np.asarray(Image.open(io.BytesIO(r.content)))


def test_upload_text_query_overlay_hover_opacity_downloads(page, server, street, tmp_path):
    assert page.title() == "omniseg"
    page.set_input_files("#file", str(street))
    page.wait_for_function("document.getElementById('status').textContent.includes('160×120')")
    page.fill("#classes", CLASSES)
    start_waiting(page)
    page.click("#run")
    wait_done(page)
    assert page.get_attribute("#overlay", "data-ready") == "1"
    assert overlay_pixels(page) > 0
    screenshot(page, "segment")
    legend = page.locator("#legend li").all_inner_texts()
    assert legend and all(any(c.strip() in item for c in CLASSES.split(",")) for item in legend)

    labels = api_label_map(server, street)
    classes = [c.strip() for c in CLASSES.split(",")]
    for x, y in ((40, 90), (80, 10)):
        page.mouse.move(*image_point(page, x, y))
        match = re.fullmatch(r"(.+) \((\d+), (\d+)\)", page.inner_text("#hover"))
        assert match, page.inner_text("#hover")
        shown_x, shown_y = int(match.group(2)), int(match.group(3))
        assert abs(shown_x - x) <= 1 and abs(shown_y - y) <= 1  # the mouse lands on whole CSS pixels
        label = labels[shown_y, shown_x]
        assert match.group(1) == ("unlabeled" if label == 255 else classes[label])

    page.locator("#opacity").fill("20")
    assert page.evaluate("getComputedStyle(document.getElementById('overlay')).opacity") == "0.2"

    with page.expect_download() as info:
        page.click("#download-json")
    answer = json.loads(Path(info.value.path()).read_text())
    assert answer["classes"] == classes and "display" not in answer
    with page.expect_download() as info:
        page.click("#download-png")
    assert info.value.suggested_filename == "street_label.png"
    np.testing.assert_array_equal(np.asarray(Image.open(info.value.path())), labels)


def test_click_produces_a_mask_and_a_box_too(page, street):
    page.set_input_files("#file", str(street))
    page.wait_for_function("document.getElementById('status').textContent.includes('loaded')")
    page.click("#modes button[data-mode=click]")
    start_waiting(page)
    page.mouse.click(*image_point(page, 80, 20))
    wait_done(page)
    answer = page.evaluate("state.answer")
    assert answer["mask"]["area_fraction"] > 0
    assert overlay_pixels(page) > 0
    (point,) = page.evaluate("state.points")
    assert point["positive"] and abs(point["x"] - 80) <= 1 and abs(point["y"] - 20) <= 1

    start_waiting(page)
    page.mouse.click(*image_point(page, 10, 110), button="right")  # a negative point
    wait_done(page)
    assert page.evaluate("state.points.map(p => p.positive)") == [True, False]

    page.click("#click-clear")
    start_waiting(page)
    page.mouse.move(*image_point(page, 20, 60))
    page.mouse.down()
    page.mouse.move(*image_point(page, 90, 100), steps=5)
    page.mouse.up()
    wait_done(page)
    box = page.evaluate("state.box")
    assert box[0] <= 21 and box[2] >= 89 and page.evaluate("state.answer.mask.area_fraction") > 0
    screenshot(page, "box")


def test_phrase_and_example_modes(page, street, tmp_path):
    other, _ = make_scene(np.random.default_rng(8), height=120, width=160)
    example = tmp_path / "example.png"
    Image.fromarray(other).save(example)
    page.set_input_files("#file", str(street))
    page.wait_for_function("document.getElementById('status').textContent.includes('loaded')")

    page.click("#modes button[data-mode=phrase]")
    page.fill("#phrase", "the sky")
    start_waiting(page)
    page.click("#refer")
    wait_done(page)
    assert page.evaluate("state.answer.phrase") == "the sky"

    page.click("#modes button[data-mode=example]")
    page.set_input_files("#example-file", str(example))
    page.wait_for_function("document.getElementById('example-paint').width === 160")
    box = page.locator("#example-paint").bounding_box()
    page.mouse.move(box["x"] + 0.2 * box["width"], box["y"] + 0.15 * box["height"])
    page.mouse.down()
    page.mouse.move(box["x"] + 0.8 * box["width"], box["y"] + 0.2 * box["height"], steps=10)
    page.mouse.up()
    assert page.evaluate("state.example.mask.reduce((a, b) => a + b, 0)") > 50
    start_waiting(page)
    page.click("#incontext")
    wait_done(page)
    assert sum(page.evaluate("state.answer.fractions").values()) == pytest.approx(1.0, abs=1e-3)
    screenshot(page, "incontext")


def test_drop_an_image_and_errors_are_shown(page, street):
    data = base64.b64encode(street.read_bytes()).decode("ascii")
    transfer = page.evaluate_handle(
        """(b64) => { const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                      const dt = new DataTransfer();
                      dt.items.add(new File([bytes], 'dropped.png', { type: 'image/png' }));
                      return dt; }""",
        data,
    )
    page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})
    page.wait_for_function("document.getElementById('status').textContent.includes('160×120')")
    assert page.evaluate("state.stem") == "dropped"
    page.fill("#classes", " , ")
    start_waiting(page)
    page.click("#run")
    page.wait_for_function("document.getElementById('status').textContent === 'Failed.'")
    assert page.inner_text("#error").startswith("400: ")


def test_api_docs_render_offline(page, server):
    page.goto(server + "/docs")
    page.wait_for_selector(".swagger-ui .info .title")
    assert "omniseg" in page.inner_text(".swagger-ui .info .title")
    assert page.get_by_text("/v1/segment", exact=True).count() >= 1


def test_portrait_images_stay_in_view_markers_clear_between_modes_and_favicon(page, server, tmp_path):
    import httpx

    tall, _ = make_scene(np.random.default_rng(9), height=900, width=300)  # portrait, taller than the window
    path = tmp_path / "tall.png"
    Image.fromarray(tall).save(path)
    page.set_input_files("#file", str(path))
    page.wait_for_function("document.getElementById('status').textContent.includes('loaded')")
    box = page.locator("#marks").bounding_box()
    viewport = page.viewport_size
    assert box["y"] + box["height"] <= viewport["height"] and box["height"] > 300  # whole picture in view
    assert box["width"] / box["height"] == pytest.approx(300 / 900, rel=0.02)  # not squeezed
    screenshot(page, "portrait")

    page.click("#modes button[data-mode=click]")
    start_waiting(page)
    page.mouse.click(*image_point(page, 150, 100))
    wait_done(page)
    marked = "(() => { const c = document.getElementById('marks'); const d = c.getContext('2d')" \
        ".getImageData(0, 0, c.width, c.height).data; let n = 0; for (let i = 3; i < d.length; i += 4) " \
        "if (d[i]) n++; return n; })()"  # fmt: skip
    assert page.evaluate(marked) > 0
    page.click("#modes button[data-mode=phrase]")
    assert page.evaluate(marked) == 0 and page.evaluate("state.points.length") == 0  # no stale click marker
    screenshot(page, "phrase_after_click")

    icon = httpx.get(f"{server}/favicon.ico", timeout=30)
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    assert page.evaluate("document.querySelector('link[rel=icon]').href").endswith("/favicon.ico")


def test_overlay_colours_come_from_the_server_and_differ(page, street):
    page.set_input_files("#file", str(street))
    page.wait_for_function("document.getElementById('status').textContent.includes('loaded')")
    page.fill("#classes", CLASSES)
    start_waiting(page)
    page.click("#run")
    wait_done(page)
    colours = page.evaluate("state.colours")
    assert colours and len({tuple(c) for c in colours.values()}) == len(colours)
    swatches = page.evaluate("[...document.querySelectorAll('#legend .swatch')].map(s => s.style.background)")
    assert len(swatches) == len(colours) and len(set(swatches)) == len(swatches)
