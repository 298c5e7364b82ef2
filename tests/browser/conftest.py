"""Fixtures for the browser tests: a throw-away JupyterLab server and a headless Chromium.

The server runs from this Python environment (the project's ``.venv`` under ``make test``) on a
free localhost port, with no token and its own config, data, runtime, settings and workspace
folders in a temporary directory, so nothing a learner configured leaks in and nothing is left
behind. Its root directory holds *copies* of the widget notebooks with their outputs stripped:
running them in the browser can never write into ``notebooks/``, and every widget on the page
comes from this run's kernel. The server and its kernels are stopped whatever happens.

Chromium is Debian's ``/usr/bin/chromium`` (``SOLO_CHROMIUM`` overrides the path); Playwright
never downloads a browser of its own. Without Chromium the tests are skipped with the reason
shown in the summary, except under CI (``CI`` set), where that is an error: CI installs it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
SCREENSHOTS = ROOT / "outputs" / "browser"
KERNEL_NAME = "solo-course"
CHROMIUM = Path(os.environ.get("SOLO_CHROMIUM", "/usr/bin/chromium"))
# As in the machine notes: no sandbox (CI runs as root), and no background connections, which a
# closed network refuses, many at a time.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SERVER_START_TIMEOUT = 90  # seconds; JupyterLab starts in ~3 s here
# The kernel gets the environment of `make lab`, not the one of nbval: the Makefile exports this
# for every target, and the test-only settings (MPLBACKEND=Agg, TQDM_DISABLE, ...) are dropped.
LAB_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3"}
TEST_ONLY_ENV = ("MPLBACKEND", "TQDM_DISABLE", "CUDA_VISIBLE_DEVICES", "PYTHONHASHSEED")

_skip_reasons: set[str] = set()
# Requests to the local server never go through a proxy from the environment.
_local = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def widget_notebooks() -> list[str]:
    """Names of the committed notebooks whose stored outputs display an ipywidget."""
    names = []
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        if any("application/vnd.jupyter.widget-view+json" in out.get("data", {})
               for cell in cells for out in cell.get("outputs", [])):
            names.append(path.name)
    return names


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run the browser tests: .ci/run installs Chromium)", pytrace=False)
    _skip_reasons.add(reason)
    pytest.skip(reason)


def pytest_terminal_summary(terminalreporter):
    for reason in sorted(_skip_reasons):
        terminalreporter.write_line(f"BROWSER TESTS SKIPPED: {reason}", yellow=True, bold=True)


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    if not os.access(CHROMIUM, os.X_OK):
        _skip_or_fail(f"no Chromium at {CHROMIUM}; install it (Debian/Ubuntu: `sudo apt-get install chromium`) "
                      "or set SOLO_CHROMIUM to its path to run the JupyterLab widget tests")
    try:
        import playwright  # noqa: F401
    except ImportError:
        _skip_or_fail(f"the playwright package is not installed in {sys.prefix}; run the tests with "
                      "`make test` (it installs requirements.txt into .venv)")
    return CHROMIUM


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _strip_outputs(source: Path, target: Path) -> None:
    """Copy a notebook without outputs, so the page shows only what this run's kernel made."""
    nb = json.loads(source.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    nb["metadata"].pop("widgets", None)
    target.write_text(json.dumps(nb, indent=1))


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.ipynb"))}


def _child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (the kernels, which run in process groups of their own)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def _signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(os.getpgid(pid), signum)
    except (ProcessLookupError, PermissionError):
        pass


@dataclass
class Lab:
    url: str
    root: Path
    log: Path

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture(scope="session")
def jupyter_lab(chromium_path, tmp_path_factory):
    """A JupyterLab server on copies of the widget notebooks; stopped (with its kernels) afterwards."""
    base = tmp_path_factory.mktemp("jupyterlab")
    root = base / "notebooks"
    root.mkdir()
    for name in widget_notebooks():
        _strip_outputs(NOTEBOOKS / name, root / name)
    dirs = {name: base / name for name in ("config", "data", "runtime", "settings", "workspaces", "ipython")}
    for folder in dirs.values():
        folder.mkdir()
    # No "get Jupyter news?" pop-up over the notebook, and no autosave (belt and braces: these are copies).
    (dirs["config"] / "labconfig").mkdir()
    (dirs["config"] / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
    docmanager = dirs["settings"] / "@jupyterlab" / "docmanager-extension"
    docmanager.mkdir(parents=True)
    (docmanager / "plugin.jupyterlab-settings").write_text(json.dumps({"autosave": False}))

    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "IPYTHON")) and k not in TEST_ONLY_ENV}
    env.update(LAB_ENV)
    env.update(JUPYTER_CONFIG_DIR=str(dirs["config"]), JUPYTER_DATA_DIR=str(dirs["data"]),
               JUPYTER_RUNTIME_DIR=str(dirs["runtime"]), JUPYTERLAB_SETTINGS_DIR=str(dirs["settings"]),
               JUPYTERLAB_WORKSPACES_DIR=str(dirs["workspaces"]), IPYTHONDIR=str(dirs["ipython"]))
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={port}", "--ServerApp.port_retries=0", "--IdentityProvider.token=",
               f"--ServerApp.root_dir={root}", "--ServerApp.allow_root=True",
               "--ServerApp.terminals_enabled=False", "--LabApp.expose_app_in_browser=True",
               "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               "--LabApp.extension_manager=readonly"]
    before = _digests(NOTEBOOKS)
    log = base / "jupyterlab.log"
    with open(log, "wb") as log_file:
        server = subprocess.Popen(command, cwd=root, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    lab = Lab(url, root, log)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            assert server.poll() is None, f"JupyterLab exited with code {server.returncode}:\n{lab.log_tail()}"
            try:
                with _local.open(f"{url}/api/status", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, (f"JupyterLab did not answer within {SERVER_START_TIMEOUT} s:\n"
                                                 f"{lab.log_tail()}")
            time.sleep(0.5)
        with _local.open(f"{url}/api/kernelspecs", timeout=10) as response:
            specs = json.load(response)["kernelspecs"]
        assert KERNEL_NAME in specs, (f"JupyterLab does not offer the '{KERNEL_NAME}' kernel, only {sorted(specs)}: "
                                      "run `make venv`, which registers it in .venv")
        assert specs[KERNEL_NAME]["spec"]["argv"][0] == sys.executable, (
            f"the '{KERNEL_NAME}' kernel runs {specs[KERNEL_NAME]['spec']['argv'][0]}, not {sys.executable}")
        yield lab
    finally:
        kernels = _child_pids(server.pid)
        _signal_group(server.pid, signal.SIGTERM)  # JupyterLab shuts its kernels down on SIGTERM
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            _signal_group(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
        for pid in kernels:
            _signal_group(pid, signal.SIGKILL)  # no-op for a kernel that already stopped
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(log, SCREENSHOTS / "jupyterlab.log")
    assert _digests(NOTEBOOKS) == before, "running the notebooks in the browser changed files in notebooks/"


@pytest.fixture(scope="session")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(chromium_path), headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser):
    """A fresh browser context and page (1280x1000) per test; page errors are collected."""
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    try:
        yield page
    finally:
        context.close()
