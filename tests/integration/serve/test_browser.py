"""The web page in a real headless Chromium (Debian's, driven by Playwright): type a query, see the grid, the
thumbnails really load, a click plays the matched moment from its window start. Saves a screenshot.

Skipped only where Chromium is absent (CI installs it: .ci/run).
"""

from __future__ import annotations

import shutil
import socket
import threading

import pytest

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--autoplay-policy=no-user-gesture-required"]


@pytest.fixture(scope="module")
def moments_index(ray_session, sample_dir, tiny_model_dir, tmp_path_factory):
    """A segment index (1 s windows every 0.5 s) of the sample archive: results are moments with a start."""
    from tara_batch.config import EmbedJobConfig, load_config
    from tara_batch.embed.job import run_embed

    table = str(tmp_path_factory.mktemp("moments") / "index.lancedb" / "moments")
    flags = {"input": {"source": str(sample_dir)}, "model": {"path": str(tiny_model_dir)}, "output": {"table": table}}
    run_embed(load_config(EmbedJobConfig, None, ["decode.segment_s=1", "decode.segment_stride_s=0.5",
                                                 "profile.max_pixels=50176"], flags=flags), progress=False)
    return table


@pytest.fixture(scope="module")
def server(moments_index, tmp_path_factory):
    import uvicorn

    from tara_batch.serve.app import ServiceConfig, create_app, wait_ready

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(ServiceConfig(table=moments_index, port=port,
                                   thumbnail_dir=str(tmp_path_factory.mktemp("thumbs"))))
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    wait_ready(url)
    yield url
    srv.should_exit = True
    thread.join(10)


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here (Debian: apt-get install chromium; CI installs it)")
def test_query_grid_thumbnails_and_moment_playback(server, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server + "/")
        page.wait_for_function("document.getElementById('index-info').textContent.includes('moments')")
        # keyboard only: type, Enter
        page.locator("#text").fill("a red circle moves from left to right")
        page.keyboard.press("Enter")
        page.wait_for_selector(".card", timeout=60_000)
        assert "results" in page.locator("#state").text_content()
        cards = page.locator(".card")
        assert cards.count() == 12
        page.wait_for_function("[...document.querySelectorAll('.card img')].every(i => i.complete)", timeout=60_000)
        widths = page.evaluate("[...document.querySelectorAll('.card img')].map(i => i.naturalWidth)")
        assert all(w > 0 for w in widths), widths
        page.screenshot(path=str(tmp_path / "results.png"), full_page=True)
        # play a moment that does not start at 0: the player starts at the window's start
        starts = [float(s) for s in page.evaluate("[...document.querySelectorAll('.card')].map(c => c.dataset.start)")]
        i = next(n for n, s in enumerate(starts) if s > 0)
        cards.nth(i).focus()
        page.keyboard.press("Enter")
        page.wait_for_selector("dialog[open] video")
        page.wait_for_function("(() => { const v = document.getElementById('video'); "
                               "return v.readyState >= 2 && (v.currentTime > 0); })()", timeout=30_000)
        t, error = page.evaluate("[document.getElementById('video').currentTime, "
                                 "document.getElementById('video').error]")
        assert error is None and t >= starts[i] - 0.05, (t, starts[i])
        src = page.evaluate("document.getElementById('video').getAttribute('src')")
        assert f"#t={starts[i]:.2f}," in src
        page.screenshot(path=str(tmp_path / "player.png"))
        page.keyboard.press("Escape")
        page.wait_for_function("!document.getElementById('player').open")
        # an empty result and an error state
        page.locator("summary").click()
        page.locator("#duration_min").fill("9999")
        page.locator("#go").click()
        page.wait_for_function("document.getElementById('state').textContent === 'No results.'")
        page.locator("#duration_min").fill("")
        page.locator("#uri_prefix").fill("bad\u0001")
        page.locator("#go").click()
        page.wait_for_function("document.getElementById('state').classList.contains('error')")
        browser.close()
    assert not errors, errors
    shutil.copy(tmp_path / "results.png", tmp_path.parent / "tara-batch-page.png")
