"""``brats serve`` in a real browser (issue 16): headless Debian Chromium driven by Playwright.

A real uvicorn server runs on a random localhost port in a thread; the page must render a listed case, take an
upload of the four modalities of a small synthetic case, segment it, and show the segmentation over it in the
toolkit's colours (checked on the canvas pixels and in NiiVue's state). Every request the page makes must go to
the server: nothing is fetched from the internet.

Needs ``/usr/bin/chromium`` (``bash scripts/install_browser.sh``) and the ``playwright`` Python package (its
bundled browsers are not used). ``BRATS_SCREENSHOT=1`` also writes ``docs/img/serve.png``;
``BRATS_SERVE_CHECKPOINT`` and ``BRATS_SERVE_SHAPE`` (``X,Y,Z``) swap in a trained checkpoint and a larger case
for that picture (the uploaded case is then synthetic case 20, which no demo trains on).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
import torch

from tests.test_serve_api import SHAPE, running_server, synthetic_case, tiny_checkpoint

torch.set_num_threads(1)

CHROMIUM = Path(os.environ.get("BRATS_CHROMIUM", "/usr/bin/chromium"))
ROOT = Path(__file__).resolve().parents[1]
COLOURS = {"NCR": (230, 26, 26), "ED": (26, 204, 51), "ET": (255, 217, 0)}


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: run `bash scripts/install_browser.sh` (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(
            "the playwright Python package is missing: pip install playwright (no browser download needed)"
        )
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``(url, case files)``: a uvicorn server in a thread on a free localhost port."""
    from brats.serve import create_app

    tmp = tmp_path_factory.mktemp("serve")
    shape = tuple(int(v) for v in os.environ.get("BRATS_SERVE_SHAPE", ",".join(map(str, SHAPE))).split(","))
    trained = os.environ.get("BRATS_SERVE_CHECKPOINT")
    files = synthetic_case(tmp / "upload", shape, index=20 if trained else 0)  # 20: a case no demo trains on
    listed = synthetic_case(tmp / "listed", (32, 32, 16))
    ckpt = trained or tiny_checkpoint(tmp / "et.pt")
    app = create_app(ckpt, cases_dir=listed["t1"].parent.parent, device="cpu", max_upload_mb=64)
    with running_server(app) as url:
        yield url, files


def canvas_pixels(page) -> np.ndarray:
    from PIL import Image

    png = page.locator("#gl").screenshot()
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int32)


def colour_counts(rgb: np.ndarray) -> dict[str, int]:
    """Pixels whose colour (minus its grey part) points towards each label colour; grey pixels count for none."""
    flat = rgb.reshape(-1, 3)
    chroma = flat - flat.min(axis=1, keepdims=True)
    coloured = chroma.max(axis=1) > 60
    refs = {k: np.array(v) - min(v) for k, v in COLOURS.items()}
    sims = np.stack(
        [chroma @ r / (np.linalg.norm(chroma, axis=1) * np.linalg.norm(r) + 1e-9) for r in refs.values()]
    )
    best = sims.argmax(axis=0)
    return {k: int(((best == i) & coloured & (sims[i] > 0.95)).sum()) for i, k in enumerate(refs)}


def test_page_segments_an_upload(browser, server):
    url, files = server
    outside: list[str] = []
    errors: list[str] = []
    page = browser.new_page(viewport={"width": 1400, "height": 820})
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)

    def only_local(route) -> None:
        host = urlparse(route.request.url).hostname
        if route.request.url.startswith(("blob:", "data:")) or host == "127.0.0.1":
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_local)
    page.goto(url)
    # The listed case shows at once: the canvas is not blank.
    page.wait_for_selector("body[data-viewer=image]", timeout=30_000)
    page.wait_for_timeout(300)
    blank = canvas_pixels(page)
    assert blank.std() > 5 and (blank.sum(axis=2) > 30).mean() > 0.02, "the viewer shows nothing"

    page.locator("#pick-all").set_input_files([str(files[m]) for m in ("t1", "t1ce", "t2", "flair")])
    assert page.locator("#file-flair").evaluate("e => e.files[0].name") == files["flair"].name
    page.click("#run-upload")
    page.wait_for_selector("body[data-viewer=segmentation]", timeout=120_000)
    page.wait_for_selector("body[data-state=done]", timeout=10_000)
    page.wait_for_timeout(300)

    nv = page.evaluate(
        """() => { const {nv, state} = window.bratsViewer; const seg = nv.volumes[1];
        const lut = seg.colormapLabel; const et = state.result.legend[2].label;
        const want = nv.mm2frac(state.result.centre_mm);
        return {n: nv.volumes.length, et, lut: Array.from(lut.lut.slice((et - lut.min) * 4, (et - lut.min) * 4 + 4)),
                opacity: seg.opacity, pos: Array.from(nv.scene.crosshairPos), want: Array.from(want),
                volumes: state.result.volumes_ml}; }"""
    )
    assert nv["n"] == 2 and nv["et"] == 4 and nv["lut"] == [255, 217, 0, 255] and nv["opacity"] > 0.5
    np.testing.assert_allclose(nv["pos"], nv["want"], atol=1e-3)  # the first view cuts through the tumour
    assert nv["volumes"]["WT"] > 0
    assert page.locator("#volumes tbody tr").count() == 4
    assert page.locator("#download").get_attribute("href").endswith("/segmentation.nii.gz")

    counts = colour_counts(canvas_pixels(page))
    if not os.environ.get("BRATS_SERVE_CHECKPOINT"):  # the test model predicts ET in the whole brain
        assert (
            counts["ET"] > 2000 and counts["NCR"] < counts["ET"] / 50 and counts["ED"] < counts["ET"] / 50
        ), counts
    if os.environ.get("BRATS_SCREENSHOT"):
        out = ROOT / "docs" / "img" / "serve.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out))

    page.click("#overlay")  # overlay off: no label colour left
    page.wait_for_timeout(300)
    assert sum(colour_counts(canvas_pixels(page)).values()) < 50
    page.click("#overlay")
    page.select_option("#modality", "t1")  # another modality, the overlay stays
    page.wait_for_function(
        "() => document.body.dataset.viewer === 'segmentation' && window.bratsViewer.nv.volumes[0].name.includes('_t1.')",
        timeout=20_000,
    )
    page.wait_for_timeout(300)
    assert max(colour_counts(canvas_pixels(page)).values()) > 2000

    assert outside == [], f"the page tried to reach the internet: {outside}"
    assert errors == [], errors
    page.close()


def test_page_shows_upload_errors(browser, server):
    url, files = server
    page = browser.new_page()
    page.goto(url)
    page.wait_for_selector("body[data-state=idle]", timeout=30_000)
    page.locator("#file-t1").set_input_files(str(files["t1"]))
    page.click("#run-upload")
    page.wait_for_selector("body[data-state=error]", timeout=30_000)
    text = page.locator("#status-text").inner_text()
    assert "flair: missing modality flair" in text and "t2: missing modality t2" in text
    page.close()
