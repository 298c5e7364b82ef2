"""Learner's-eye tests: every widget notebook in a real JupyterLab, in a real (headless) Chromium.

nbval proves the kernels run; widgets only exist in a browser. For each notebook whose committed
outputs show a widget, this opens it in JupyterLab, runs all cells, and checks what a learner would
see: no cell with an error, no "Error displaying widget", the widgets drawn as widgets (not as their
plain-text stand-in), and every slider of each explorer redrawing its figure when moved with the
keyboard. A notebook may have several widget cells; each is checked and photographed. Screenshots of
the widget cells go to ``outputs/browser/``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import pytest

from .conftest import KERNEL_NAME, NOTEBOOKS, SCREENSHOTS, widget_notebooks

pytestmark = pytest.mark.browser

OPEN_TIMEOUT = 120_000  # ms: page load and kernel start (TensorFlow is imported later, by the cells)
RUN_ALL_TIMEOUT = 420  # s: these notebooks take 10-70 s each on 2 busy cores
SLIDER_TIMEOUT = 60_000  # ms: one callback re-run


@dataclass(frozen=True)
class WidgetCell:
    """A cell of a notebook whose widgets are checked and photographed.

    Attributes:
        code: text that occurs in that cell's source and in no other code cell.
        sliders: labels of the sliders of the explorer it displays, in order; each must redraw the
            explorer's figure. Empty for a cell whose widgets are not controls (progress bars).
    """

    code: str
    sliders: tuple[str, ...] = ()


# The widget cells of each notebook, in notebook order. Adding an explorer to a notebook = one more
# WidgetCell in its tuple.
WIDGET_CELLS = {
    "03_augmentation.ipynb": (WidgetCell("viz.augmentation_explorer(", ("image", "amount", "seed")),),
    "04_targets_grid_cells.ipynb": (WidgetCell("viz.grid_explorer(", ("image", "level", "instance")),),
    # tqdm's notebook progress bar, one for the whole run while the model trains (closed at the end; it
    # reads "stopped early" when MaskAPCurve stops at the bar).
    "08_overfit_tiny_labelme.ipynb": (WidgetCell("model, history = train("),),
    "10_inference_and_matrix_nms.ipynb": (WidgetCell("viz_inspect.cell_inspector(", ("level", "row", "column")),
                                          WidgetCell("viz_nms.sigma_explorer(", ("sigma", "keep >="))),
}

# The notebook panel showing a path, found among the main area's widgets (not "the current one").
PANEL = "path => Array.from(window.jupyterapp.shell.widgets('main')).find(w => w.context && w.context.path === path)"

KERNEL_READY = f"""path => {{
    if (!window.jupyterapp) return false;
    const panel = ({PANEL})(path);
    const kernel = panel && panel.sessionContext.session && panel.sessionContext.session.kernel;
    return Boolean(kernel && kernel.status === 'idle');
}}"""

# Marks a widget cell (data-browser-test="widget-cell-K") and records in window.widgetCellLogs[K], for as
# long as the page lives, whether a widget view was ever drawn in it and any "Error displaying widget"
# it ever showed (progress bars come and go).
WATCH_CELL = f"""([path, index, k]) => {{
    const node = ({PANEL})(path).content.widgets[index].node;
    node.setAttribute('data-browser-test', `widget-cell-${{k}}`);
    window.widgetCellLogs = window.widgetCellLogs || {{}};
    const log = window.widgetCellLogs[k] = {{drawn: false, errors: []}};
    const look = () => {{
        if (node.querySelector('.jupyter-widgets')) log.drawn = true;
        if (node.textContent.includes('Error displaying widget')) log.errors.push(node.textContent.slice(-300));
    }};
    new MutationObserver(look).observe(node, {{childList: true, subtree: true, characterData: true}});
}}"""

# 'done' once every non-empty code cell ran and the kernel is idle; 'error' once run-all stopped
# at an error (JupyterLab then leaves the cells after it unexecuted); null while running.
RUN_STATE = f"""path => {{
    const panel = ({PANEL})(path);
    const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
    if (!kernel || kernel.status !== 'idle') return null;
    const cells = panel.content.widgets.filter(c => c.model.type === 'code');
    if (cells.some(c => c.model.executionState === 'running')) return null;
    if (cells.some(c => c.model.outputs.toJSON().some(o => o.output_type === 'error'))) return 'error';
    return cells.every(c => c.model.executionCount !== null || !c.model.sharedModel.getSource().trim())
        ? 'done' : null;
}}"""

# What a learner would see as broken, in the whole notebook: error outputs of cells (from the
# notebook model), "Error displaying widget" anywhere, and tracebacks or stderr that a widget
# callback printed into a widget's output area (those are not cell outputs).
PROBLEMS = f"""path => {{
    const panel = ({PANEL})(path);
    const problems = [];
    panel.content.widgets.forEach((cell, i) => {{
        if (cell.model.type !== 'code') return;
        for (const o of cell.model.outputs.toJSON()) {{
            if (o.output_type === 'error') problems.push(`cell ${{i}}: ${{o.ename}}: ${{o.evalue}}`);
        }}
    }});
    for (const n of panel.node.querySelectorAll('.jp-OutputArea-output')) {{
        if (n.textContent.includes('Error displaying widget'))
            problems.push('a widget shows: ' + n.textContent.slice(0, 300));
    }}
    for (const n of panel.node.querySelectorAll('.widget-output [data-mime-type="application/vnd.jupyter.stderr"]')) {{
        const lines = n.textContent.trim().split('\\n');
        problems.push(`a widget output shows stderr ending in "${{lines[lines.length - 1]}}":\\n`
                      + lines.slice(-25).join('\\n'));
    }}
    return problems;
}}"""

FIGURE = ".widget-output img"


def widget_cell_index(name: str, spec: WidgetCell) -> int:
    """Index (among all cells, as JupyterLab counts them) of the notebook's widget cell ``spec``."""
    cells = json.loads((NOTEBOOKS / name).read_text())["cells"]
    found = [i for i, c in enumerate(cells) if c["cell_type"] == "code" and spec.code in "".join(c["source"])]
    assert len(found) == 1, f"{name}: expected one code cell containing {spec.code!r}, found {len(found)}"
    return found[0]


def stored_widget_cells(name: str) -> list[int]:
    """Indices of the cells whose committed outputs display an ipywidget."""
    cells = json.loads((NOTEBOOKS / name).read_text())["cells"]
    return [i for i, c in enumerate(cells)
            if any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in c.get("outputs", []))]


def test_every_widget_notebook_is_covered():
    """A new widget notebook must be added to WIDGET_CELLS, so the browser tests cannot miss it."""
    assert sorted(WIDGET_CELLS) == widget_notebooks()


@pytest.mark.parametrize("name", sorted(WIDGET_CELLS))
def test_every_widget_cell_is_covered(name):
    """Each cell whose saved outputs show a widget is one of the notebook's WIDGET_CELLS, in order."""
    indices = [widget_cell_index(name, spec) for spec in WIDGET_CELLS[name]]
    assert indices == stored_widget_cells(name), (
        f"{name}: WIDGET_CELLS names cells {indices}, the saved notebook shows widgets in cells "
        f"{stored_widget_cells(name)}")


def summary(messages):
    """Distinct messages, each with how often it occurred, in order of first occurrence."""
    counts = {}
    for message in messages:
        counts[message] = counts.get(message, 0) + 1
    return "; ".join(f"{m} (x{n})" if n > 1 else m for m, n in counts.items())


def wait_for(page, expression, arg, timeout, what):
    """``page.wait_for_function`` with a readable failure: what did not happen, within how long."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        return page.wait_for_function(expression, arg=arg, timeout=timeout, polling=250).json_value()
    except PlaywrightTimeout:
        pass
    pytest.fail(f"{what} did not happen within {timeout / 1000:.0f} s", pytrace=False)


def run_all_cells(page, name, during=()):
    """Run > Run All Cells, then wait until it finished or stopped at an error.

    ``during`` lists ``(cell, path)`` pairs: each cell is photographed the first time it shows a
    widget while the notebook runs (progress bars exist only then). Returns ``'done'`` or ``'error'``.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.evaluate(f"path => {{ window.jupyterapp.shell.activateById(({PANEL})(path).id);"
                  " void window.jupyterapp.commands.execute('notebook:run-all-cells'); }", name)
    waiting = list(during)
    deadline = time.monotonic() + RUN_ALL_TIMEOUT
    while time.monotonic() < deadline:
        time.sleep(0.5)
        for cell, path in list(waiting):
            if cell.locator(".jupyter-widgets").count():
                try:
                    cell.screenshot(path=path, timeout=10_000)
                except PlaywrightTimeout:  # a picture for people, not a check: the run goes on
                    print(f"{name}: no screenshot while running (the cell did not settle within 10 s)")
                waiting.remove((cell, path))
        state = page.evaluate(RUN_STATE, name)
        if state:
            return state
    pytest.fail(f"{name}: Run All Cells did not finish within {RUN_ALL_TIMEOUT} s", pytrace=False)


@pytest.mark.parametrize("name", sorted(WIDGET_CELLS))
def test_widget_notebook_runs_and_its_widgets_work(name, page, jupyter_lab):
    stem = name.removesuffix(".ipynb")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for old in SCREENSHOTS.glob(f"{stem}-*.png"):
        old.unlink()
    metadata = json.loads((NOTEBOOKS / name).read_text())["metadata"]
    assert metadata["kernelspec"]["name"] == KERNEL_NAME, f"{name} asks for kernel {metadata['kernelspec']['name']!r}"
    specs = WIDGET_CELLS[name]
    indices = [widget_cell_index(name, spec) for spec in specs]
    # Screenshot names: the first widget cell keeps the notebook's stem, the next ones add "-cellK".
    stems = [stem if k == 0 else f"{stem}-cell{k + 1}" for k in range(len(specs))]
    try:
        # A fresh workspace: no tabs restored from an earlier test.
        page.goto(f"{jupyter_lab.url}/lab/workspaces/{stem}/tree/{name}?reset")
        wait_for(page, KERNEL_READY, name, OPEN_TIMEOUT, f"{name}: opening with an idle kernel")
        kernel = page.evaluate(f"path => ({PANEL})(path).sessionContext.session.kernel.name", name)
        assert kernel == KERNEL_NAME, f"{name} runs on kernel {kernel!r}, not {KERNEL_NAME!r}"
        cells = []
        for k, index in enumerate(indices):
            page.evaluate(WATCH_CELL, [name, index, k])
            cells.append(page.locator(f"[data-browser-test=widget-cell-{k}]"))

        during = [(cell, SCREENSHOTS / f"{cell_stem}-1-running.png")
                  for cell, spec, cell_stem in zip(cells, specs, stems) if not spec.sliders]
        state = run_all_cells(page, name, during)
        problems = page.evaluate(PROBLEMS, name)
        assert not problems and state == "done", f"{name} after Run All Cells:\n" + "\n".join(problems)
        assert not page.errors, f"{name}: JavaScript errors in the page after Run All Cells: {summary(page.errors)}"
        for k, (cell, spec, cell_stem) in enumerate(zip(cells, specs, stems)):
            where = name if len(specs) == 1 else f"{name}, widget cell {k + 1} ({spec.code!r})"
            log = page.evaluate("k => window.widgetCellLogs[k]", k)
            assert not log["errors"], f"{where}: the widget cell showed: {log['errors'][:3]}"
            cell.scroll_into_view_if_needed()
            if not log["drawn"]:
                shown = cell.locator(".jp-Cell-outputArea").text_content()
                pytest.fail(f"{where}: the widget cell never showed a widget (is the jupyterlab_widgets front end "
                            f"installed?); its output reads: {shown[:500]!r}", pytrace=False)
            if spec.sliders:
                check_explorer(page, name, cell, spec, cell_stem, where)
            else:
                cell.screenshot(path=SCREENSHOTS / f"{cell_stem}-2-after-run.png")
            assert not page.errors, f"{where}: JavaScript errors in the page: {summary(page.errors)}"
    except BaseException:
        try:  # the whole window, for a person; the original failure is what gets reported
            page.screenshot(path=SCREENSHOTS / f"{stem}-failure.png", timeout=10_000)
        except Exception as error:
            print(f"no failure screenshot: {error}")
        raise
    finally:
        try:  # frees the kernel for the next notebook; the server's teardown stops it anyway
            page.evaluate(f"path => {{ const panel = window.jupyterapp && ({PANEL})(path);"
                          " return panel ? panel.sessionContext.shutdown() : null; }", name)
        except Exception as error:
            print(f"kernel of {name} not shut down from the page: {error}")


def check_explorer(page, name, cell, spec, stem, where=None):
    """The explorer shows its sliders and one figure; each slider, moved, redraws the figure.

    ``name`` is the notebook's path (the page looks its panel up by it); ``where`` names the notebook,
    and the cell when it has several, in failure messages.
    """
    where = where or name
    sliders = cell.locator(".widget-slider")
    labels = []
    for i in range(sliders.count()):
        # As a learner would: scroll to the slider first. JupyterLab renders cells outside the
        # viewport lazily, and a label that is not rendered has no inner text (a tall figure above
        # the explorer, as in notebook 04, can leave it below the window after Run All).
        sliders.nth(i).scroll_into_view_if_needed()
        labels.append(sliders.nth(i).locator(".widget-label").inner_text())
    labels = tuple(labels)
    assert labels == spec.sliders, f"{where}: explorer sliders are {labels}, expected {spec.sliders}"
    shown = cell.locator(FIGURE).count()
    assert shown == 1, f"{where}: the explorer shows {shown} figures, expected 1"
    cell.screenshot(path=SCREENSHOTS / f"{stem}-1-before-sliders.png")
    for i, label in enumerate(labels):
        move_slider_and_check_the_figure(page, name, cell, sliders.nth(i), label, where)
    cell.screenshot(path=SCREENSHOTS / f"{stem}-2-after-sliders.png")


def move_slider_and_check_the_figure(page, name, cell, slider, label, where=None):
    """One keyboard step on a slider's handle; the readout and the figure must both change."""
    where = where or name
    handle = slider.locator(".noUi-handle")
    readout = slider.locator(".widget-readout")
    value, highest = handle.get_attribute("aria-valuenow"), handle.get_attribute("aria-valuemax")
    key = "ArrowLeft" if float(value) >= float(highest) else "ArrowRight"
    before_value = readout.inner_text()
    before_src = cell.locator(FIGURE).get_attribute("src")
    handle.press(key)
    # Wait for the redrawn figure, or for the callback's traceback in the widget's output area.
    outcome = wait_for(page, f"""([node, before]) => {{
            if (node.querySelector('.widget-output [data-mime-type="application/vnd.jupyter.stderr"]')) return 'stderr';
            const img = node.querySelector('{FIGURE}');
            return img && img.getAttribute('src') !== before ? 'redrawn' : null;
        }}""", [cell.element_handle(), before_src], SLIDER_TIMEOUT,
        f"{where}: a redrawn figure after {key} on slider {label!r} (value {before_value})")
    wait_for(page, KERNEL_READY, name, SLIDER_TIMEOUT, f"{where}: kernel idle after moving {label!r}")
    problems = page.evaluate(PROBLEMS, name)
    assert outcome == "redrawn" and not problems, (
        f"{where}: after {key} on slider {label!r} (value {before_value}):\n" + "\n".join(problems))
    after_value = readout.inner_text()
    assert after_value != before_value, f"{where}: slider {label!r} did not move ({before_value} -> {after_value})"
    shown = cell.locator(FIGURE).count()
    assert shown == 1, f"{where}: after moving {label!r} the explorer shows {shown} figures, expected 1"
