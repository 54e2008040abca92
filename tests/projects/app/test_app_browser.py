"""The web app in a real browser: the server in a subprocess, headless Chromium driven through playwright.

Every tab runs on tiny checkpoints the test builds (tiny_models.py), passed as a user's ``--ckpt TAB=PATH``. The
uploads are the real files of ../shared/data (a source photo and a driving video cut to its first frames, so the
run stays short; the app itself has no frame cap) or, where that folder is absent, files the test renders.
Checks: the reenacted video has the driver's frame count and frame rate (read back from the file the page
serves), the expression probabilities sum to one per time step and are plotted, a broken file gives a message
and the server keeps serving. Screenshots go to the test's tmp folder, and to ``$PAPERLAB_APP_SCREENSHOTS`` when
set (``PAPERLAB_APP_SCREENSHOTS=docs/app make test-browser`` refreshes the README's pictures).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[3]
CHROMIUM = os.environ.get("PAPERLAB_CHROMIUM", "/usr/bin/chromium")
# Without these Chromium waits on the network (updates, sync, QUIC probes) that this machine does not have.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CLIP_FRAMES = 6  # driving frames uploaded: the test's cap (the app reenacts every frame it is given)
TIMEOUT_MS = 120_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """Source photo and a short driving clip: the real files when ../shared/data is there, else rendered ones."""
    from PIL import Image

    from common.data.video import iter_video, write_video

    folder = tmp_path_factory.mktemp("inputs")
    ex = ROOT.parent / "shared" / "data" / "StelaBou_HyperReenact" / "inference_examples"
    if ex.is_dir():
        source = ex / "source.png"
        frames = []
        for fr in iter_video(ex / "target_video_1.mp4"):
            frames.append(fr)
            if len(frames) == CLIP_FRAMES:
                break
    else:  # a procedural face clip (seed 0: MTCNN finds the face in every frame)
        from common.data.synthetic_faces import render_clip

        frames = list(render_clip(0, CLIP_FRAMES, np.random.default_rng(0), size=256))
        source = folder / "source.png"
        Image.fromarray(frames[0]).save(source)
    clip = folder / "driving.mp4"
    write_video(clip, frames, 25.0)
    broken = folder / "broken.mp4"
    broken.write_bytes(b"this is not a video\n" * 50)
    return {"source": source, "driving": clip, "broken": broken}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app on a free port in a subprocess, with tiny checkpoints for every tab; its URL."""
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"Chromium not found at {CHROMIUM} (apt-get install chromium; .ci/run installs it)")
    pytest.importorskip("gradio", reason="the app extra is not installed (pip install -e '.[app]')")
    pytest.importorskip("playwright", reason="playwright is not installed (the dev extra has it)")
    sys.path.insert(0, str(Path(__file__).parent))
    import tiny_models

    folder = tmp_path_factory.mktemp("app")
    ckpts = tiny_models.all_ckpts(folder / "ckpts")
    port = _free_port()
    env = dict(os.environ, PAPERLAB_WEIGHTS=str(folder / "no_weights"), OMP_NUM_THREADS="1")
    env.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    cmd = [sys.executable, "-m", "projects.app.main", "--port", str(port), "--workdir", str(folder / "work")]
    cmd += [a for tab, p in ckpts.items() for a in ("--ckpt", f"{tab}={p}")]
    log = open(folder / "server.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(url, timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    pytest.fail(f"the app did not start:\n{(folder / 'server.log').read_text()[-3000:]}")
                time.sleep(0.5)
        yield {"url": url, "proc": proc, "log": folder / "server.log"}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def page(server, tmp_path_factory):
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium_profile")
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            args=CHROMIUM_FLAGS,
            headless=True,
            viewport={"width": 1280, "height": 900},
        )
        pg = ctx.new_page()
        pg.set_default_timeout(TIMEOUT_MS)
        pg.goto(server["url"], wait_until="domcontentloaded")
        pg.locator("#reenact-run").wait_for()
        yield pg
        ctx.close()


def _shot(page, name: str, tmp_path: Path) -> None:
    """Screenshot into the test's tmp folder; a small palette copy into $PAPERLAB_APP_SCREENSHOTS when set."""
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    dest = os.environ.get("PAPERLAB_APP_SCREENSHOTS")
    if dest:
        from PIL import Image

        Path(dest).mkdir(parents=True, exist_ok=True)
        with Image.open(path) as im:
            im = im.convert("RGB")
            im = im.resize((im.width * 3 // 4, im.height * 3 // 4), Image.LANCZOS)
            im.quantize(64, method=Image.Quantize.MEDIANCUT).save(Path(dest) / f"{name}.png", optimize=True)


def _tab(page, name: str, server: dict | None = None) -> None:
    """Open tab ``name``; with ``server``, on a freshly loaded page (empty inputs)."""
    if server is not None:
        page.goto(server["url"], wait_until="domcontentloaded")
        page.locator("#reenact-run").wait_for()
    page.get_by_role("tab", name=name).click()


def _wait_result(page, info_id: str, status_id: str) -> str:
    """Wait until the handler filled its JSON box or wrote an error; returns the JSON text ('' on error)."""
    page.wait_for_function(
        """([i, s]) => {
            const t = document.querySelector(`#${i} textarea`);
            const m = document.querySelector(`#${s}`);
            return (t && t.value.length > 0) || (m && m.innerText.includes('Error'));
        }""",
        arg=[info_id, status_id],
        timeout=TIMEOUT_MS,
    )
    return page.locator(f"#{info_id} textarea").input_value()


def _clear_outputs(page, info_id: str) -> None:
    page.evaluate(f"() => {{ const t = document.querySelector('#{info_id} textarea'); if (t) t.value = ''; }}")


def _upload(page, elem_id: str, path: Path) -> None:
    page.locator(f"#{elem_id} input[type=file]").set_input_files(str(path))


def _video_back(page, server, elem_id: str, dest: Path) -> Path:
    """The file behind the page's <video>, fetched from the server as the browser does."""
    src = page.locator(f"#{elem_id} video").first.get_attribute("src")
    assert src, f"no video shown in #{elem_id}"
    url = src if src.startswith("http") else server["url"] + src
    dest.write_bytes(urllib.request.urlopen(url, timeout=30).read())
    return dest


@pytest.mark.parametrize("method", ["StyleMask", "HyperReenact"])
def test_reenact_tab_returns_the_driving_frame_count_and_rate(page, server, inputs, method, tmp_path):
    from common.data.video import video_info

    _tab(page, "Reenact", server)
    _upload(page, "reenact-source", inputs["source"])
    _upload(page, "reenact-driving", inputs["driving"])
    page.get_by_label(method).check()
    _clear_outputs(page, "reenact-info")
    page.locator("#reenact-run").click()
    text = _wait_result(page, "reenact-info", "reenact-status")
    assert text, page.locator("#reenact-status").inner_text()
    info = json.loads(text)
    page.locator("#reenact-output video").wait_for()
    video = _video_back(page, server, "reenact-output", tmp_path / "reenacted.mp4")
    n, fps, (h, w) = video_info(video)
    n_in, fps_in, _ = video_info(inputs["driving"])
    assert (n, fps) == (n_in, fps_in) == (info["frames"], info["fps"]) == (CLIP_FRAMES, 25.0)
    assert w == 3 * h  # source | driver | reenacted
    _shot(page, f"reenact_{method.lower()}", tmp_path)


def test_expressions_tab_plots_probabilities_that_sum_to_one(page, server, inputs, tmp_path):
    _tab(page, "Expressions", server)
    _upload(page, "expr-video", inputs["driving"])
    page.locator("#expr-window input").fill("0.12")
    page.locator("#expr-stride input").fill("0.04")
    _clear_outputs(page, "expr-json")
    page.locator("#expr-run").click()
    text = _wait_result(page, "expr-json", "expr-status")
    assert text, page.locator("#expr-status").inner_text()
    data = json.loads(text)
    probs = np.asarray(data["probs"])
    assert probs.shape == (len(data["times"]), len(data["classes"])) and probs.shape[0] > 1
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert (probs >= 0).all()
    assert np.all(np.diff(data["times"]) > 0)
    # the plot is drawn, and the gallery holds the face crops the model saw
    page.locator("#expr-plot canvas, #expr-plot svg").first.wait_for()
    seen = {i for w in data["frames_seen"] for i in w}
    page.wait_for_function(f"() => document.querySelectorAll('#expr-crops img').length >= {len(seen)}")
    _shot(page, "expressions", tmp_path)


def test_broken_file_gives_a_message_and_the_server_keeps_serving(page, server, inputs, tmp_path):
    _tab(page, "Expressions", server)
    _upload(page, "expr-video", inputs["broken"])
    _clear_outputs(page, "expr-json")
    page.locator("#expr-run").click()
    page.wait_for_function("() => document.querySelector('#expr-status').innerText.includes('Error')")
    status = page.locator("#expr-status").inner_text()
    assert "broken.mp4" in status and "not a video" in status
    _shot(page, "error", tmp_path)
    assert server["proc"].poll() is None
    # the next request is served as usual
    _tab(page, "Generate")
    _clear_outputs(page, "gen-info")
    page.locator("#gen-run").click()
    assert json.loads(_wait_result(page, "gen-info", "gen-status"))["seeds"] == [0, 1, 2, 3]


def test_generate_tab_samples_with_truncation_and_style_mixing(page, server, tmp_path):
    _tab(page, "Generate", server)
    page.locator("#gen-seeds textarea, #gen-seeds input").first.fill("0-5")
    page.locator("#gen-mix input[type=checkbox]").check()
    page.locator("#gen-mix-from input").fill("3")
    _clear_outputs(page, "gen-info")
    page.locator("#gen-run").click()
    info = json.loads(_wait_result(page, "gen-info", "gen-status"))
    assert info["seeds"] == list(range(6))
    page.wait_for_function("() => document.querySelectorAll('#gen-output img').length >= 13")  # 6 + mix seed + 6
    _shot(page, "generate", tmp_path)


def test_retrieve_tab_lists_neighbours_with_fine_labels(page, server, tmp_path):
    _tab(page, "Retrieve", server)
    page.locator("#ret-query input").fill("3")
    _clear_outputs(page, "ret-info")
    page.locator("#ret-run").click()
    info = json.loads(_wait_result(page, "ret-info", "ret-status"))
    assert info["query"]["index"] == 3 and len(info["neighbours"]) == 8
    sims = [r["similarity"] for r in info["neighbours"]]
    assert sims == sorted(sims, reverse=True) and all(r["index"] != 3 for r in info["neighbours"])
    page.wait_for_function("() => document.querySelectorAll('#ret-output img').length >= 8")
    _shot(page, "retrieve", tmp_path)
