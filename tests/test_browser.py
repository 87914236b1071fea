"""Every notebook as a person runs it: JupyterLab in a real browser, fast mode typed into the parameters cell,
Run All Cells from the menu, then what the page shows is checked.

JupyterLab is the project's own (.venv), started on a loopback port with a token and without --allow-root
(this also proves `make` set the environment up to start as root). The browser is Debian's chromium
(`make browser`) driven by Playwright; Playwright's own browser download is never used. Screenshots of each
notebook and of each figure go to runs/browser/. This is also the test that executes the notebooks in CI.
"""

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO_ROOT

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))
CHROMIUM = Path("/usr/bin/chromium")
# As root there is no user namespace for Chromium's sandbox; the machine has no network, so nothing may
# phone home (component updates, sync, first-run pages).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = REPO_ROOT / "runs" / "browser"
# The evaluation table each notebook prints (metrics.format_kitti_road_table / format_segmentation_table;
# 05 compares exports with deploy_report.format_comparison_table, MaxF per category too).
TABLE_TEXT = {"01_kitti_road": "MaxF", "05_inference_export": "MaxF"}
SEGMENTATION_TABLE_TEXT = "mean IoU"
VIEW_TABLES = {"01_kitti_road": ("KITTI Road, perspective view", "KITTI Road, bird's-eye view")}
# The dataset notebooks end their evaluation with the worst validation frames and their error maps.
WORST_FRAMES_FIGURE = "worst_frames"
WORST_FRAMES_NOTEBOOKS = ("01_kitti_road", "02_kitti_semantic", "03_cityscapes", "04_camvid")
NOTEBOOK_TIMEOUT_S = 900  # a fast-mode notebook takes one to two minutes on 2 cores
# This test's JupyterLab settings: every cell in the DOM (JupyterLab 4 otherwise renders only the cells near
# the viewport), no autosave (the page edits the parameters), no news or update checks (no network).
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    "@jupyterlab/apputils-extension/notification": {"checkForUpdates": False, "fetchNews": "false"},
}
CELL_SELECTOR = ".jp-NotebookPanel .jp-Notebook .jp-Cell"
# Per cell of the open notebook: its prompt and its outputs as rendered (mime type, text, images).
PAGE_STATE_JS = """selector => [...document.querySelectorAll(selector)].map(cell => ({
  code: cell.classList.contains('jp-CodeCell'),
  prompt: (cell.querySelector('.jp-InputPrompt') || {}).textContent || '',
  outputs: [...cell.querySelectorAll('.jp-OutputArea-child')].map(child => {
    const output = child.querySelector('.jp-OutputArea-output');
    return {mime: output.dataset.mimeType || output.className, text: output.innerText.slice(0, 3000),
            executeResult: child.classList.contains('jp-OutputArea-executeResult')};
  }),
  images: [...cell.querySelectorAll('.jp-OutputArea-output img')].map(img => ({
    complete: img.complete, width: img.naturalWidth, height: img.naturalHeight})),
}))"""
STDERR_MIME = "application/vnd.jupyter.stderr"  # JupyterLab renders tracebacks and stderr streams with it


def _require_browser():
    missing = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package (pip install -r requirements-dev.txt)")
    if not CHROMIUM.is_file():
        missing.append(f"{CHROMIUM} (`make browser`, or apt-get install chromium)")
    if missing:
        message = "browser test needs " + " and ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Lab:
    """A running JupyterLab: its URL, token and the folder it serves (a copy of notebooks/)."""

    url: str
    token: str
    root: Path

    def api(self, path: str, method: str = "GET"):
        request = urllib.request.Request(f"{self.url}/api/{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def shut_down_kernels(self) -> None:
        for session in self.api("sessions"):
            self.api(f"sessions/{session['id']}", method="DELETE")


def _write_lab_settings(settings_dir: Path) -> None:
    for plugin, values in LAB_SETTINGS.items():
        path = settings_dir / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


def _wait_until_serving(lab: Lab, process: subprocess.Popen, log: Path, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"JupyterLab exited with code {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            lab.api("status")
            return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"JupyterLab did not answer within {timeout_s} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """The project's JupyterLab on a loopback port, with a token, settings and config folders of its own."""
    _require_browser()
    home = tmp_path_factory.mktemp("jupyterlab")
    root = home / "root"
    # The page edits the notebooks: it gets copies, and the checkout stays clean.
    shutil.copytree(REPO_ROOT / "notebooks", root / "notebooks")
    _write_lab_settings(home / "settings")
    # Own config/data/runtime folders: a user's ~/.jupyter (allow_root, say) must not make this test pass.
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"), "JUPYTER_CONFIG_DIR": str(home / "config"),
           "JUPYTER_DATA_DIR": str(home / "data"), "JUPYTER_RUNTIME_DIR": str(home / "runtime")}
    lab = Lab(url=f"http://127.0.0.1:{_free_port()}", token=secrets.token_hex(16), root=root)
    # What a person types (`.venv/bin/jupyter lab`), as root in CI, and no --allow-root.
    command = [str(Path(sys.prefix, "bin", "jupyter-lab")), "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={lab.url.rsplit(':', 1)[1]}", "--ServerApp.port_retries=0",
               f"--IdentityProvider.token={lab.token}", f"--ServerApp.root_dir={root}"]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    log = SCREENSHOTS / "jupyterlab.log"
    with open(log, "w") as log_file:
        process = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT, cwd=root)
    try:
        _wait_until_serving(lab, process, log)
        yield lab
    finally:
        process.terminate()  # the server shuts its kernels down on SIGTERM
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def browser(lab):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _open_notebook(page, lab: Lab, notebook: Path, n_cells: int) -> None:
    # A workspace per notebook, so each page opens just that notebook.
    page.goto(f"{lab.url}/lab/workspaces/{notebook.stem}/tree/notebooks/{notebook.name}?token={lab.token}")
    page.wait_for_function("([selector, n]) => document.querySelectorAll(selector).length === n",
                           arg=[CELL_SELECTOR, n_cells], timeout=120_000)


def _type_parameters(page, cell_index: int, overrides: dict) -> None:
    """Append assignments at the end of the parameters cell, as a person would type them."""
    editor = page.locator(CELL_SELECTOR).nth(cell_index).locator(".cm-content")
    editor.click()
    page.keyboard.press("Control+End")
    typed = "".join(f"\n{name} = {value!r}" for name, value in overrides.items())
    page.keyboard.insert_text(typed)
    assert editor.inner_text().endswith(typed.strip()), "the parameters cell did not take the typed text"


def _wait_for_idle_kernel(lab: Lab, timeout_s: float = 300) -> None:
    """Until the notebook's kernel has started and is idle: on a loaded machine that takes a while, and a
    Run All clicked before it is ready can be lost."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(session["kernel"]["execution_state"] == "idle" for session in lab.api("sessions")):
            return
        time.sleep(1)
    pytest.fail(f"the notebook's kernel was not idle within {timeout_s} s: {lab.api('sessions')}")


def _run_all_cells(page, started_within_s: float = 60) -> None:
    """Run > Run All Cells, as a person clicks it; clicked once more if no cell was queued after a minute."""
    for _ in range(2):
        page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-item", has_text=re.compile(r"^Run All Cells")).click()
        deadline = time.monotonic() + started_within_s
        while time.monotonic() < deadline:
            prompts = [cell["prompt"].strip() for cell in page.evaluate(PAGE_STATE_JS, CELL_SELECTOR) if cell["code"]]
            if any(prompt != "[ ]:" for prompt in prompts):
                return
            time.sleep(1)


def _wait_until_all_ran(page, timeout_s: float) -> list[dict]:
    """Poll the page until no cell is queued or running ([*]); an error stops Run All, so this ends too."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = page.evaluate(PAGE_STATE_JS, CELL_SELECTOR)
        prompts = [cell["prompt"].strip() for cell in state if cell["code"]]
        if "[*]:" not in prompts and any(prompt != "[ ]:" for prompt in prompts):
            return state
        time.sleep(2)
    return page.evaluate(PAGE_STATE_JS, CELL_SELECTOR)


def _save_screenshots(page, stem: str, figure_cells: list[int]) -> None:
    for old in SCREENSHOTS.glob(f"{stem}*.png"):
        old.unlink()
    # The notebook scrolls inside its panel, which clips what lies outside the window: a window as tall as
    # the notebook shows all of it, and every cell whole.
    scroller = "document.querySelector('.jp-NotebookPanel .jp-WindowedPanel-outer')"
    height = page.evaluate(f"() => {scroller}.scrollHeight")
    page.set_viewport_size({"width": 1400, "height": min(16000, height + 200)})
    page.evaluate(f"() => {{ {scroller}.scrollTop = 0; }}")
    page.wait_for_timeout(500)
    page.screenshot(path=SCREENSHOTS / f"{stem}.png")
    cells = page.locator(CELL_SELECTOR)
    for index in figure_cells:
        cells.nth(index).screenshot(path=SCREENSHOTS / f"{stem}-cell{index:02d}.png")


def _expected_figure_names(cells: list[dict]) -> set[str]:
    """Files saved by viz.save_figure(fig, "<name>", ...) calls (all into FIGURES_DIR on synthetic data)."""
    sources = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    return {f"{name}.png" for name in re.findall(r"viz\.save_figure\([^,]+,\s*\"([^\"]+)\"", sources)}


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_jupyterlab_and_shows_its_figures(notebook, lab, browser, tmp_path):
    from fcn.train import fast_config

    cells = json.loads(notebook.read_text())["cells"]
    tags = [cell.get("metadata", {}).get("tags", []) for cell in cells]
    parameters = next(i for i, cell_tags in enumerate(tags) if "parameters" in cell_tags)
    setup = next(i for i, cell in enumerate(cells) if cell["cell_type"] == "code")
    figure_cells = [i for i, cell_tags in enumerate(tags) if "figure" in cell_tags]
    figures_dir = tmp_path / "figures"
    overrides = dict(FAST=True, SYNTHETIC_DIR=str(tmp_path / "data"), RUN_DIR=str(tmp_path / "run"),
                     FIGURES_DIR=str(figures_dir))

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        _open_notebook(page, lab, notebook, len(cells))
        _wait_for_idle_kernel(lab)
        _type_parameters(page, parameters, overrides)
        _run_all_cells(page)
        state = _wait_until_all_ran(page, NOTEBOOK_TIMEOUT_S)
        _save_screenshots(page, notebook.stem, figure_cells)
    except Exception:
        page.screenshot(path=SCREENSHOTS / f"{notebook.stem}-failed.png")
        raise
    finally:
        page.close()
        lab.shut_down_kernels()

    stderr = {i: [o["text"] for o in cell["outputs"] if o["mime"] == STDERR_MIME]
              for i, cell in enumerate(state)}
    assert not stderr[setup], f"red output under the imports: {stderr[setup]}"
    assert not any(stderr.values()), f"error or stderr output: { {i: t for i, t in stderr.items() if t} }"
    prompts = {i: cell["prompt"].strip() for i, cell in enumerate(state) if cell["code"]}
    not_run = {i: prompt for i, prompt in prompts.items() if not re.fullmatch(r"\[\d+\]:", prompt)}
    assert not not_run, f"cells that did not run (cell: prompt): {not_run}"
    for index in figure_cells:
        shown = [image for image in state[index]["images"] if image["complete"] and image["width"] > 0]
        assert shown, f"cell {index} is tagged 'figure' but shows no image: {state[index]['outputs']}"
    stray = {i: [o["text"][:200] for o in cell["outputs"] if o["executeResult"] and o["mime"] != "image/png"]
             for i, cell in enumerate(state)}
    assert not any(stray.values()), (
        f"Out[] values that are not figures: { {i: t for i, t in stray.items() if t} }")
    page_text = "\n".join(o["text"] for cell in state for o in cell["outputs"])
    table_text = TABLE_TEXT.get(notebook.stem, SEGMENTATION_TABLE_TEXT)
    assert table_text in page_text, f"no evaluation table ({table_text!r}) on the page"
    for view_table in VIEW_TABLES.get(notebook.stem, ()):  # KITTI Road: the devkit's scores in both views
        assert view_table in page_text, f"no {view_table!r} table on the page"
    # Training shows one line per epoch, and the fast mode trains the fast config's few epochs.
    epoch_lines = re.findall(r"^Epoch (\d+)/(\d+)$", page_text, re.MULTILINE)
    fast_epochs = str(fast_config().epochs)
    assert epoch_lines == [(str(e), fast_epochs) for e in range(1, fast_config().epochs + 1)], epoch_lines
    written = {path.name for path in figures_dir.glob("*.png")}
    assert written == _expected_figure_names(cells), f"figures written to {figures_dir}: {sorted(written)}"
    if notebook.stem in WORST_FRAMES_NOTEBOOKS:
        _check_worst_frames_gallery(cells, state, figures_dir)


def _check_worst_frames_gallery(cells: list[dict], state: list[dict], figures_dir: Path) -> None:
    """The gallery cell shows its image on the page, after the evaluation table, and saved it."""
    saves = f'viz.save_figure(fig, "{WORST_FRAMES_FIGURE}"'
    gallery = [i for i, cell in enumerate(cells) if saves in "".join(cell["source"])]
    assert len(gallery) == 1, f"one cell saves {WORST_FRAMES_FIGURE}.png, found cells {gallery}"
    shown = [image for image in state[gallery[0]]["images"] if image["complete"] and image["width"] > 0]
    assert len(shown) == 1 and shown[0]["height"] > 200, f"the worst-frames gallery is not shown: {shown}"
    table = next(i for i, cell in enumerate(state) if any(t in o["text"] for o in cell["outputs"]
                                                          for t in ("MaxF", SEGMENTATION_TABLE_TEXT)))
    assert gallery[0] > table, "the worst frames come after the evaluation scores"
    assert (figures_dir / f"{WORST_FRAMES_FIGURE}.png").stat().st_size > 0
