"""Pictures of the architecture: the whole SOLOv2 network with its tensor shapes (notebook 00), and
the small "you are here" map at the top of notebooks 04-12.

One module past ~300 lines, for two pictures of one pipeline: the network's diagram, most of whose
length is the layout of its boxes (:func:`draw_architecture`), and the course map that every
notebook from 04 on draws as ``viz_arch.you_are_here``; moving the map elsewhere would change the
code of those notebooks for a module of 60 lines.

The shapes in the big picture are not typed in: :func:`architecture_shapes` traces the model's own
layers (backbone, FPN, head, mask feature branch, dynamic convolution and post-processing) on a
canvas of the model's configuration and reads the shape of every stage from the traced graph, so
the picture cannot drift from the code. The stages follow SOLOv2 §3 (Wang et al., arXiv
2003.10152): C2-C5 from the backbone, P2-P6 from the FPN, per level a category branch
``(B, S, S, C)`` and a kernel branch ``(B, S, S, E)`` (§3.2), the unified mask feature
``(B, H/4, W/4, E)`` (§3.2.2), dynamic convolution to masks (§3.2), and point NMS (the authors' code)
plus Matrix NMS (§3.3) to instances.
"""

from __future__ import annotations

import dataclasses

import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

# --------------------------------------------------------------------------------------------
# The shapes of a built model
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage of the network and the shape of the tensor it produces.

    Attributes:
        key: a short unique id (``"input"``, ``"C2"``, ``"P3"``, ``"category_0"``, ``"kernel_0"``,
            ``"mask_feature"``, ``"point_nms"``, ``"masks"``, ``"instances"``).
        name: what a learner reads in the picture.
        shape: the tensor shape; an int per known axis, a letter for an axis whose size depends on
            the image's content (``"K"``: candidate cells, ``"N"``: kept instances).
        part: which part of the network it belongs to (``"input"``, ``"backbone"``, ``"fpn"``,
            ``"head"``, ``"mask_feature"``, ``"dynamic_conv"``, ``"postprocess"``).
        notebook: the notebook that teaches it.
    """

    key: str
    name: str
    shape: tuple
    part: str
    notebook: str

    @property
    def shape_text(self) -> str:
        """The shape as printed in the picture, e.g. ``(1, 64, 64, 256)``."""
        return "(" + ", ".join(str(v) for v in self.shape) + ")"


def default_canvas(config) -> tuple[int, int]:
    """The canvas ``(Hc, Wc)`` of a landscape image at ``config.image_scale``
    (:func:`solo_lib.geometry.canvas_size`): (256, 256) for the tiny preset, (800, 1344) for the
    paper's (1333, 800).

    Raises:
        ValueError: the configuration has no image scale (give a canvas instead).
    """
    from solo_lib.geometry import canvas_size

    if config.image_scale is None:
        raise ValueError("this model has no image_scale; pass canvas=(height, width), multiples of 32")
    long, short = max(config.image_scale), min(config.image_scale)
    return canvas_size(short, long, config.image_scale)


def _trace_stages(model, canvas):
    """Traces the model's layers on a ``(1, Hc, Wc, 3)`` input and returns ``{key: TensorShape}``.

    Runs nothing: ``tf.function`` builds the graph of the real layers, whose static shapes are the
    shapes every call on that canvas produces (a test checks them against an eager run).
    """
    import tensorflow as tf

    from solo_lib.inference import category_scores, instances
    from solo_lib.model.dynamic import dynamic_conv, gather_kernels
    from solo_lib.model.solov2 import head_inputs, normalize_images, split_levels

    config = model.config
    shapes = {}

    def forward(images, cells):
        x = normalize_images(images, config.normalization)
        features = model.backbone(x, training=False)
        pyramid = model.fpn(features, training=False)
        outputs = model.head(head_inputs(pyramid, config.num_levels), training=False)
        outputs["mask_feature"] = model.mask_branch(pyramid[:4], training=False)
        shapes["input"] = images.shape
        for k, c in enumerate(features):
            shapes[f"C{k + 2}"] = c.shape
        for k, p in enumerate(pyramid):
            shapes[f"P{k + 2}"] = p.shape
        for name in ("category", "kernel"):
            for level, t in enumerate(split_levels(outputs[name], config.grid_sizes)):
                shapes[f"{name}_{level}"] = t.shape
        shapes["mask_feature"] = outputs["mask_feature"].shape
        shapes["point_nms"] = category_scores(outputs["category"], config.grid_sizes).shape
        shapes["masks"] = dynamic_conv(outputs["mask_feature"], gather_kernels(outputs["kernel"], cells)).shape
        # Post-processing as a graph (postprocess itself returns numpy, eagerly): the image fills the canvas.
        result = instances(outputs["category"], outputs["kernel"], outputs["mask_feature"], config, canvas)
        shapes["instances"] = result["masks"].shape
        return result["masks"]

    tf.function(forward, autograph=False).get_concrete_function(tf.TensorSpec((1, *canvas, 3), tf.float32),
                                               tf.TensorSpec((1, None), tf.int32))
    return shapes


def _shape(tensor_shape, unknown: str) -> tuple:
    """A ``TensorShape`` as a tuple of ints, with ``unknown`` for an axis of unknown size."""
    return tuple(unknown if v is None else int(v) for v in tensor_shape.as_list())


def architecture_shapes(model, canvas=None) -> list[Stage]:
    """The tensor shape at each stage of a built SOLOv2 model, read from its own layers.

    Args:
        model: a :class:`solo_lib.model.solov2.SOLOv2` (any preset; the tiny sample model of
            :func:`solo_lib.demo.load_sample_model`, or ``build_model(SOLOConfig.paper_r50(80))``).
        canvas: ``(Hc, Wc)`` of the input, multiples of 32; default :func:`default_canvas`.

    Returns:
        A list of :class:`Stage`, in the order data flows: the input canvas; C2-C5; P2-P5 (and P6
        for five levels); per level its category ``(1, S, S, C)`` and kernel ``(1, S, S, E)``
        outputs; the mask feature ``(1, Hc/4, Wc/4, E)``; the scores after point NMS
        ``(1, sum S^2, C)``; the masks of K candidate cells ``(1, K, Hc/4, Wc/4)``; and the
        instances after Matrix NMS ``(N, Hc, Wc)``.
    """
    config = model.config
    canvas = tuple(int(v) for v in (default_canvas(config) if canvas is None else canvas))
    if len(canvas) != 2 or any(v <= 0 or v % 32 for v in canvas):
        raise ValueError(f"canvas must be (height, width), positive multiples of 32, got {canvas}")
    traced = _trace_stages(model, canvas)
    strides = {"C2": 4, "C3": 8, "C4": 16, "C5": 32, "P2": 4, "P3": 8, "P4": 16, "P5": 32, "P6": 64}
    stages = [Stage("input", "input canvas", _shape(traced["input"], "?"), "input", "04")]
    stages += [Stage(k, f"{k}  stride {strides[k]}", _shape(traced[k], "?"), "backbone", "05")
               for k in ("C2", "C3", "C4", "C5")]
    stages += [Stage(f"P{k}", f"P{k}  stride {strides[f'P{k}']}", _shape(traced[f"P{k}"], "?"), "fpn", "05")
               for k in range(2, 7) if f"P{k}" in traced]
    for level, s in enumerate(config.grid_sizes):
        stages.append(Stage(f"category_{level}", f"level {level} category, S = {s}",
                            _shape(traced[f"category_{level}"], "?"), "head", "06"))
        stages.append(Stage(f"kernel_{level}", f"level {level} kernel, S = {s}",
                            _shape(traced[f"kernel_{level}"], "?"), "head", "06"))
    stages.append(Stage("mask_feature", "mask feature F", _shape(traced["mask_feature"], "?"), "mask_feature", "06"))
    stages.append(Stage("point_nms", "scores after point NMS", _shape(traced["point_nms"], "?"), "postprocess", "10"))
    stages.append(Stage("masks", "dynamic conv: masks", _shape(traced["masks"], "K"), "dynamic_conv", "06"))
    stages.append(Stage("instances", "instances after Matrix NMS", _shape(traced["instances"], "N"),
                        "postprocess", "10"))
    return stages


# --------------------------------------------------------------------------------------------
# The whole network as a block diagram
# --------------------------------------------------------------------------------------------

BOX_COLORS = {  # one soft colour per part of the network, the same in both pictures
    "input": "#e8e8e8", "data": "#e8e8e8", "targets": "#f3e3c3", "backbone": "#cfe2f3", "fpn": "#d9ead3",
    "head": "#fce5cd", "mask_feature": "#ead1dc", "dynamic_conv": "#d9d2e9", "losses": "#f4cccc",
    "training": "#d0e0e3", "postprocess": "#fff2cc", "evaluation": "#e6e6fa",
}
GROUP_TITLES = {
    "backbone": "backbone (05)", "fpn": "FPN (05)", "head": "head, per level (06)",
    "mask_feature": "mask feature branch (06)", "postprocess": "dynamic conv + post-processing (06, 10)",
}
NAME_SIZE, SHAPE_SIZE = 9, 9


def _box(ax, x, y, w, h, lines, *, gid, color, bold_first=True):
    """A rounded box centred at (x, y) with centred text lines (the first in bold)."""
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.06",
                                facecolor=color, edgecolor="#555555", linewidth=1.0, gid=gid, zorder=2))
    step = 0.21
    top = y + step * (len(lines) - 1) / 2
    for i, line in enumerate(lines):
        ax.text(x, top - i * step, line, ha="center", va="center", zorder=3, gid=f"{gid}:text{i}",
                fontsize=NAME_SIZE if i == 0 else SHAPE_SIZE,
                fontweight="bold" if (i == 0 and bold_first) else "normal",
                family="sans-serif" if i == 0 else "monospace")


def _arrow(ax, start, end, gid, arrows, *, connection="arc3,rad=0"):
    arrow = FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=11, linewidth=1.1, color="#333333",
                            connectionstyle=connection, shrinkA=0, shrinkB=0, gid=gid, zorder=1)
    ax.add_patch(arrow)
    arrows.append(gid)


def _group(ax, x0, y0, x1, y1, part):
    ax.add_patch(FancyBboxPatch((x0, y0), x1 - x0, y1 - y0, boxstyle="round,pad=0.02,rounding_size=0.1",
                                facecolor="none", edgecolor="#999999", linewidth=0.9, linestyle="--",
                                gid=f"group:{part}", zorder=0))
    ax.text((x0 + x1) / 2, y1 + 0.13, GROUP_TITLES[part], ha="center", va="bottom", fontsize=NAME_SIZE,
            color="#444444", style="italic", gid=f"group:{part}:title")


def draw_architecture(model, canvas=None, *, shapes=None):
    """The whole SOLOv2 network as a block diagram, every box labelled with its shape.

    Left to right: the input canvas, the backbone's C2-C5, the FPN's P2-P5 (P6), one head box per
    level (its grid S, category and kernel shapes), the mask feature branch below them, and the
    path to instances: point NMS and a score threshold pick K cells, dynamic convolution turns
    their kernels and the mask feature into K masks, maskness and Matrix NMS keep N instances.
    Rows hold pyramid levels, finest on top. Shapes come from :func:`architecture_shapes`.

    Args:
        model: a built SOLOv2 (tiny or paper preset).
        canvas: ``(Hc, Wc)``; default the canvas of a landscape image at the model's image scale.
        shapes: the list :func:`architecture_shapes` returned for this model and canvas, if you
            have it already (tracing the model again takes a few seconds).

    Returns:
        A matplotlib Figure. Boxes are ``FancyBboxPatch`` with gid ``"box:<stage key>"`` (head
        levels ``"box:level<l>"``), their texts ``"box:<key>:text<i>"``; arrows are
        ``FancyArrowPatch`` with gids ``"<from>-><to>"``, in the order data flows.
    """
    config = model.config
    stages = {s.key: s for s in (architecture_shapes(model, canvas) if shapes is None else shapes)}
    fpn_keys = [k for k in ("P2", "P3", "P4", "P5", "P6") if k in stages]
    rows = len(fpn_keys)  # P2..P5 (P6): one row per pyramid level, finest on top
    row_h, bw, bh = 0.95, 1.85, 0.62
    x_in, x_c, x_p, x_head, x_post = 1.0, 3.15, 5.35, 7.95, 10.95
    head_w, head_h = 2.55, 0.82
    y = {r: (rows - r) * row_h + row_h for r in range(rows + 1)}  # row r's centre; row `rows` = mask feature
    fig_h = (rows + 1) * row_h + 1.15
    fig, ax = plt.subplots(figsize=(12.5, fig_h))
    ax.set_xlim(-0.05, 12.45)
    ax.set_ylim(y[rows] - row_h / 2 - 0.1, y[0] + row_h / 2 + 0.35)
    ax.axis("off")
    arrows: list[str] = []

    def lines(stage, name=None):
        return [name or stage.name, stage.shape_text]

    # Input, backbone, FPN.
    y_mid_c = (y[0] + y[3]) / 2
    _box(ax, x_in, y_mid_c, bw - 0.05, bh + 0.2, ["input canvas", *_wrap_shape(stages["input"].shape_text),
                                                  "RGB 0-255"], gid="box:input", color=BOX_COLORS["input"])
    for r, k in enumerate(("C2", "C3", "C4", "C5")):
        _box(ax, x_c, y[r], bw, bh, lines(stages[k]), gid=f"box:{k}", color=BOX_COLORS["backbone"])
    for r, k in enumerate(fpn_keys):
        _box(ax, x_p, y[r], bw, bh, lines(stages[k]), gid=f"box:{k}", color=BOX_COLORS["fpn"])
    _group(ax, x_c - bw / 2 - 0.12, y[3] - bh / 2 - 0.12, x_c + bw / 2 + 0.12, y[0] + bh / 2 + 0.08, "backbone")
    _group(ax, x_p - bw / 2 - 0.12, y[rows - 1] - bh / 2 - 0.12, x_p + bw / 2 + 0.12, y[0] + bh / 2 + 0.08, "fpn")

    _arrow(ax, (x_in + bw / 2 - 0.02, y_mid_c), (x_c - bw / 2, y[0]), "input->C2", arrows)
    for r in range(3):
        _arrow(ax, (x_c, y[r] - bh / 2), (x_c, y[r + 1] + bh / 2), f"C{r + 2}->C{r + 3}", arrows)
    for r in range(4):
        _arrow(ax, (x_c + bw / 2, y[r]), (x_p - bw / 2, y[r]), f"C{r + 2}->P{r + 2}", arrows)
    for r in (3, 2, 1):  # top-down pathway
        _arrow(ax, (x_p, y[r] + bh / 2), (x_p, y[r - 1] - bh / 2), f"P{r + 2}->P{r + 1}", arrows)
    if rows == 5:
        _arrow(ax, (x_p + 0.55, y[3] - bh / 2), (x_p + 0.55, y[4] + bh / 2), "P5->P6", arrows)

    # Head: one box per level, reading P(l+2) (P2 halved, P6 at P5's size).
    for level, s in enumerate(config.grid_sizes):
        cat, ker = stages[f"category_{level}"], stages[f"kernel_{level}"]
        _box(ax, x_head, y[level], head_w, head_h,
             [f"level {level}: S = {s}", f"category {cat.shape_text}", f"kernel   {ker.shape_text}"],
             gid=f"box:level{level}", color=BOX_COLORS["head"])
    levels = config.num_levels
    _group(ax, x_head - head_w / 2 - 0.12, y[levels - 1] - head_h / 2 - 0.1, x_head + head_w / 2 + 0.12,
           y[0] + head_h / 2 + 0.06, "head")
    for level in range(levels):
        _arrow(ax, (x_p + bw / 2, y[level]), (x_head - head_w / 2, y[level]), f"P{level + 2}->level{level}", arrows)

    # Mask feature branch, under the head.
    mf = stages["mask_feature"]
    y_mf = y[rows]
    _box(ax, x_head, y_mf, head_w, bh, ["mask feature F (from P2-P5)", mf.shape_text], gid="box:mask_feature",
         color=BOX_COLORS["mask_feature"])
    # From the FPN as a whole (the branch reads P2-P5; P6, when there is one, sits below P5).
    _arrow(ax, (x_p - 0.5, y[rows - 1] - bh / 2 - 0.12), (x_head - head_w / 2, y_mf), "P2-P5->mask_feature", arrows,
           connection="angle,angleA=-90,angleB=180,rad=0")

    # Post-processing column: point NMS -> dynamic conv -> Matrix NMS -> instances.
    y_nms, y_inst = y[0], y[rows]
    y_masks = (y_nms + y_inst) / 2
    pn, masks, inst = stages["point_nms"], stages["masks"], stages["instances"]
    _box(ax, x_post, y_nms, 2.4, bh + 0.2, ["point NMS, score > thr", pn.shape_text, "-> K cells"],
         gid="box:point_nms", color=BOX_COLORS["postprocess"])
    _box(ax, x_post, y_masks, 2.4, bh + 0.2, ["dynamic conv: K masks", masks.shape_text, "kernel . F per pixel"],
         gid="box:masks", color=BOX_COLORS["dynamic_conv"])
    _box(ax, x_post, y_inst, 2.4, bh + 0.2, ["maskness, Matrix NMS", inst.shape_text, "N instances"],
         gid="box:instances", color=BOX_COLORS["postprocess"])
    _group(ax, x_post - 1.32, y_inst - (bh + 0.2) / 2 - 0.1, x_post + 1.32, y_nms + (bh + 0.2) / 2 + 0.06,
           "postprocess")
    _arrow(ax, (x_head + head_w / 2, y[0] + 0.12), (x_post - 1.2, y_nms + 0.12), "category->point_nms", arrows)
    _arrow(ax, (x_post, y_nms - (bh + 0.2) / 2), (x_post, y_masks + (bh + 0.2) / 2), "point_nms->masks", arrows)
    _arrow(ax, (x_head + head_w / 2, y[1]), (x_post - 1.2, y_masks + 0.1), "kernel->masks", arrows)
    _arrow(ax, (x_head + head_w / 2, y_mf), (x_post - 1.2, y_masks - 0.1), "mask_feature->masks", arrows)
    _arrow(ax, (x_post, y_masks - (bh + 0.2) / 2), (x_post, y_inst + (bh + 0.2) / 2), "masks->instances", arrows)

    ax.set_title(f"SOLOv2 ({config.backbone} backbone, {config.num_levels} levels, C = {config.num_classes}, "
                 f"E = {config.mask_channels}) on a {stages['input'].shape[1]} x {stages['input'].shape[2]} "
                 "canvas: shapes read from the built model", fontsize=10.5)
    fig.tight_layout()
    return fig


def _wrap_shape(text: str) -> list[str]:
    """A shape split after its second number when it is too long for the narrow input box."""
    if len(text) <= 18:
        return [text]
    parts = text.split(", ")
    return [", ".join(parts[:2]) + ",", ", ".join(parts[2:])]


# --------------------------------------------------------------------------------------------
# "You are here": the course's pipeline, one part highlighted
# --------------------------------------------------------------------------------------------

# The course's pipeline, left to right: (part, label). The label's last line names the notebooks.
PIPELINE_PARTS = (
    ("data", "data: COCO,\nLabelMe,\naugment\n01-03"),
    ("targets", "targets\ngrid cells\n04"),
    ("backbone", "backbone\n+ FPN\n05"),
    ("heads", "heads, mask\nfeature, dyn.\nconv\n06"),
    ("losses", "losses\nfocal + dice\n07"),
    ("training", "training\n08, 08b, 09"),
    ("inference", "inference\nMatrix NMS\n10"),
    ("evaluation", "evaluation\nmask AP\n11"),
)
PART_NAMES = {"data": "data", "targets": "targets", "backbone": "backbone + FPN",
              "heads": "heads, mask feature, dynamic conv", "losses": "losses", "training": "training",
              "inference": "inference + Matrix NMS", "evaluation": "evaluation"}
# Notebook -> the parts its "you are here" map highlights.
NOTEBOOK_PARTS = {
    "01": ("data",), "02": ("data",), "03": ("data",), "04": ("targets",), "05": ("backbone",),
    "06": ("heads",), "07": ("losses",), "08": ("training",),
    "08b": ("data", "training", "inference", "evaluation"),  # real photos: the whole loop on one's own data
    "09": ("training",), "10": ("inference",), "11": ("evaluation",),
    "12": ("inference",),  # deploy: exports what inference runs (the network and its post-processing)
}
HIGHLIGHT = "#ffb347"  # the face colour of the highlighted part(s)
DIMMED = "#f2f2f2"


def _notebook_key(notebook) -> str:
    """``4``, ``"04"``, ``"4"`` -> ``"04"``; ``"08b"`` -> ``"08b"``; anything else is a ValueError
    naming the known notebooks."""
    known = ", ".join(NOTEBOOK_PARTS)
    key = None
    if isinstance(notebook, int) and not isinstance(notebook, bool):
        key = f"{notebook:02d}"
    elif isinstance(notebook, str):
        text = notebook.strip().lower()
        key = f"{int(text):02d}" if text.isdigit() else text
    if key not in NOTEBOOK_PARTS:
        raise ValueError(f"no 'you are here' map for notebook {notebook!r}; known notebooks: {known}")
    return key


def you_are_here(notebook):
    """A small map of the course's pipeline with the given notebook's part(s) highlighted.

    Args:
        notebook: the notebook number, as an int (``4``) or a string (``"04"``, ``"08b"``); 01-12 and 08b.

    Returns:
        A matplotlib Figure of about 8 x 1.6 inches, made with ``plt.subplots`` so that a cell
        needs only ``you_are_here(4)`` then ``plt.show()``. Each part is a ``FancyBboxPatch``
        with gid ``"part:<name>"`` (names in :data:`PIPELINE_PARTS`); highlighted parts have
        face colour :data:`HIGHLIGHT`. Arrows have gids ``"<part>-><next part>"``.

    Raises:
        ValueError: a notebook without a map (not 01-12 or 08b).
    """
    key = _notebook_key(notebook)
    here = NOTEBOOK_PARTS[key]
    fig, ax = plt.subplots(figsize=(8, 1.6))
    n, w, gap = len(PIPELINE_PARTS), 0.86, 0.14
    ax.set_xlim(-0.04, n * (w + gap) - gap + 0.04)
    ax.set_ylim(-0.02, 1.0)
    ax.axis("off")
    for i, (part, label) in enumerate(PIPELINE_PARTS):
        x = i * (w + gap)
        lit = part in here
        ax.add_patch(FancyBboxPatch((x, 0.04), w, 0.7, boxstyle="round,pad=0.0,rounding_size=0.06",
                                    facecolor=HIGHLIGHT if lit else DIMMED,
                                    edgecolor="#333333" if lit else "#aaaaaa", linewidth=1.8 if lit else 0.8,
                                    gid=f"part:{part}"))
        ax.text(x + w / 2, 0.39, label, ha="center", va="center", fontsize=7.2, linespacing=1.1,
                color="black" if lit else "#666666", fontweight="bold" if lit else "normal", gid=f"part:{part}:text")
        if i + 1 < n:
            ax.add_patch(FancyArrowPatch((x + w + 0.005, 0.39), (x + w + gap - 0.005, 0.39), arrowstyle="-|>",
                                         mutation_scale=8, color="#888888", linewidth=0.8, shrinkA=0, shrinkB=0,
                                         gid=f"{part}->{PIPELINE_PARTS[i + 1][0]}"))
    names = "; ".join(PART_NAMES[part] for part, _ in PIPELINE_PARTS if part in here)
    ax.text(0.0, 0.98, f"You are here: notebook {key} ({names})", ha="left", va="top", fontsize=9,
            fontweight="bold", gid="title")
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=0.98)
    return fig
