"""Pictures and widget callbacks for the notebooks.

Every widget callback here is a pure function of its arguments that returns a figure and the
arrays it drew, so tests can call it and notebooks only wire sliders to it.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import to_rgb

# One colour per class, the same in every notebook (matplotlib's colour-blind-safe tab10 order).
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")

AUGMENTATIONS = ("none", "flip", "brightness", "scale", "crop", "random")

# Group id of the class-name labels drawn by draw_instances, so separate_labels can find them.
LABEL_GID = "instance-label"


def setup_notebook(dpi: int = 80) -> None:
    """Inline figures as JPEG at a modest dpi: the course's textured images make PNG figures
    large, and executed notebooks are committed. Call once in a notebook's setup cell."""
    from matplotlib_inline.backend_inline import set_matplotlib_formats

    set_matplotlib_formats("jpeg")
    plt.rcParams["figure.dpi"] = dpi
    plt.rcParams["savefig.dpi"] = dpi


def class_color(label: int) -> tuple[float, float, float]:
    """The RGB colour (floats in [0, 1]) of a class label."""
    return to_rgb(PALETTE[int(label) % len(PALETTE)])


def overlay_masks(image: np.ndarray, masks: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blends each instance mask into the image in its class colour.

    Args:
        image: ``(H, W, 3)`` uint8.
        masks: ``(N, H, W)`` binary.
        labels: ``(N,)`` class labels.
        alpha: opacity of the masks.

    Returns:
        ``(H, W, 3)`` uint8; pixels under several masks take the last one's colour.
    """
    out = np.asarray(image, np.float32).copy()
    for mask, label in zip(np.asarray(masks).astype(bool), np.asarray(labels)):
        out[mask] = (1 - alpha) * out[mask] + alpha * 255.0 * np.array(class_color(label))
    return out.clip(0, 255).astype(np.uint8)


def draw_instances(ax, image, masks, labels, class_names, boxes=None, *, title=None, alpha=0.5):
    """Draws an image with its instances: coloured masks, outlines, boxes and class names.

    Args:
        ax: a matplotlib Axes.
        image: ``(H, W, 3)`` uint8.
        masks: ``(N, H, W)`` binary.
        labels: ``(N,)`` class labels.
        class_names: names indexed by label.
        boxes: optional ``(N, 4)`` ``[x0, y0, x1, y1]`` (exclusive right/bottom).
        title: optional axes title.
        alpha: mask opacity.
    """
    masks, labels = np.asarray(masks), np.asarray(labels)
    ax.imshow(overlay_masks(image, masks, labels, alpha))
    for k, (mask, label) in enumerate(zip(masks, labels)):
        color = class_color(label)
        if mask.any():
            ax.contour(mask, levels=[0.5], colors=[color], linewidths=1.0)
        if boxes is not None and mask.any():
            x0, y0, x1, y1 = np.asarray(boxes[k], float)
            ax.add_patch(plt.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec=color, lw=1, ls="--"))
            ax.text(x0 - 0.5, y0 - 1.5, class_names[int(label)], color="white", fontsize=7,
                    bbox={"facecolor": color, "pad": 1, "lw": 0}, gid=LABEL_GID)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)


def separate_labels(fig, gap: float = 1.0) -> None:
    """Moves the class-name labels of :func:`draw_instances` so none leaves its axes or covers another.

    A label sits just above its box's top-left corner. A box at the top of the image would push it
    into the axes title, and boxes with nearby corners stack their labels on top of each other.
    Call this after the figure's layout is final (after ``tight_layout``): it measures the labels
    in display pixels, pulls each one inside its axes, and moves it down below any label already
    placed that it overlaps (in drawing order).

    Args:
        fig: a figure whose axes were drawn with :func:`draw_instances`.
        gap: display pixels kept between a label and its neighbours or the axes' edge.
    """
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        labels = [t for t in ax.texts if t.get_gid() == LABEL_GID]
        if not labels:
            continue
        ax.apply_aspect()  # an image's axes shrink to its aspect ratio only when drawn: do it now
        frame = ax.get_window_extent(renderer)
        to_data = ax.transData.inverted()
        placed = []
        for text in labels:
            box = _label_extent(text, renderer)
            dx = min(0.0, frame.x1 - gap - box.x1) + max(0.0, frame.x0 + gap - box.x0)  # keep it inside
            dy = min(0.0, frame.y1 - gap - box.y1)  # below the top edge (display y grows upwards)
            box = box.translated(dx, dy)
            for _ in range(len(placed) + 1):  # each step clears one overlap; a clear spot is found in time
                hit = next((other for other in placed if box.overlaps(other)), None)
                if hit is None or box.y0 - (box.y1 - hit.y0 + gap) < frame.y0:
                    break  # free, or no room left below: leave it
                shift = box.y1 - hit.y0 + gap
                box = box.translated(0.0, -shift)
                dy -= shift
            if dx or dy:
                x, y = ax.transData.transform(text.get_position())
                text.set_position(to_data.transform((x + dx, y + dy)))
            placed.append(box)


def _label_extent(text, renderer):
    """Display-pixel extent of a label including its coloured background box."""
    patch = text.get_bbox_patch()
    if patch is not None:
        text.update_bbox_position_size(renderer)
        return patch.get_window_extent(renderer)
    return text.get_window_extent(renderer)


def show_samples(samples, *, class_names=None, ncols: int = 4, size: float = 3.0, titles=None):
    """A grid of samples with their instances.

    Args:
        samples: ``Sample`` objects (``solo_lib.data.coco``) or sample dicts (``image``, ``masks``,
            ``labels``, ``boxes``, optional ``image_id``).
        class_names: names indexed by label; default: each Sample's own ``class_names``.
        ncols: panels per row.
        size: panel size in inches.
        titles: optional title per panel; default: image id and instance count.

    Returns:
        The matplotlib figure.
    """
    samples = [s if isinstance(s, dict) else {**vars(s)} for s in samples]
    nrows = max(1, -(-len(samples) // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (s, ax) in enumerate(zip(samples, axes.flat)):
        ax.axis("on")
        title = titles[i] if titles else f"image {int(s.get('image_id', i))}: {len(s['labels'])} instances"
        draw_instances(ax, s["image"], s["masks"], s["labels"], class_names or s["class_names"], s["boxes"],
                       title=title)
    fig.tight_layout()
    separate_labels(fig)
    return fig


def legend_handles(class_names):
    """Legend patches, one per class, in the class palette."""
    return [plt.Rectangle((0, 0), 1, 1, color=class_color(i), label=name) for i, name in enumerate(class_names)]


def augmentation_view(sample: dict, class_names, transform: str = "random", amount: float = 0.5, seed: int = 0):
    """Callback of notebook 03's explorer: one transform, before and after.

    Args:
        sample: a sample dict (see ``solo_lib.data.augment``).
        class_names: names indexed by label.
        transform: one of :data:`AUGMENTATIONS`.
        amount: strength in [0, 1]: brightness shift (``2 * amount - 1`` of 255), scale factor
            (``0.5 + amount``), crop window side (``1 - 0.7 * amount`` of the image, at the
            seeded offset); ignored by ``flip`` and ``none``.
        seed: seed of the random choices (crop offset, ``random``).

    Returns:
        ``(figure, augmented)``: the figure and the augmented sample as numpy arrays.
    """
    from solo_lib.data import augment as aug

    if transform not in AUGMENTATIONS:
        raise ValueError(f"transform must be one of {AUGMENTATIONS}, got {transform!r}")
    src = _to_numpy(sample)
    if transform == "none":
        out = src
    elif transform == "flip":
        out = aug.horizontal_flip(src)
    elif transform == "brightness":
        out = aug.adjust_brightness(src, 2.0 * amount - 1.0)
    elif transform == "scale":
        out = aug.rescale(src, 0.5 + amount)
    elif transform == "crop":
        h, w = src["image"].shape[:2]
        ch, cw = max(1, round(h * (1 - 0.7 * amount))), max(1, round(w * (1 - 0.7 * amount)))
        rng = np.random.default_rng(seed)
        out = aug.crop(src, int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw)
    else:
        out = aug.augment(src, seed=[seed, 0], config=aug.AugmentConfig(crop_size=(160, 160)))
    out = _to_numpy(out)
    fig, axes = plt.subplots(1, 2, figsize=(8, 4))
    draw_instances(axes[0], src["image"], src["masks"], src["labels"], class_names, src["boxes"],
                   title=f"before: {len(src['labels'])} instances, {src['image'].shape[1]}x{src['image'].shape[0]}")
    draw_instances(axes[1], out["image"], out["masks"], out["labels"], class_names, out["boxes"],
                   title=f"after {transform}: {len(out['labels'])} instances, "
                         f"{out['image'].shape[1]}x{out['image'].shape[0]}")
    fig.tight_layout()
    separate_labels(fig)
    return fig, out


def _to_numpy(sample: dict) -> dict:
    return {k: v.numpy() if hasattr(v, "numpy") else np.asarray(v) for k, v in sample.items()}


def augmentation_explorer(dataset):
    """An ipywidgets explorer over :func:`augmentation_view` for a ``CocoDataset``.

    Its children are, in order: image index, transform, amount and seed controls. After
    ``w.children[i].value = ...`` the widget re-runs and ``w.result`` holds the augmented sample.
    """
    import ipywidgets as widgets

    samples = {}

    def show(index=0, transform="flip", amount=0.5, seed=0):
        if index not in samples:
            samples[index] = dataset[index].to_dict()
        fig, out = augmentation_view(samples[index], dataset.class_names, transform, amount, seed)
        plt.show()
        return out

    return widgets.interactive(
        show,
        index=widgets.IntSlider(0, 0, len(dataset) - 1, description="image"),
        transform=widgets.Dropdown(options=AUGMENTATIONS, value="flip", description="transform"),
        amount=widgets.FloatSlider(0.5, min=0.0, max=1.0, step=0.05, description="amount"),
        seed=widgets.IntSlider(0, 0, 20, description="seed"),
    )


def grid_view(sample, config, level: int = 0, instance: int = 0):
    """Callback of notebook 04's grid explorer: one level's S x S grid and one instance's cells.

    Left: the image with all instance outlines, the level's grid, the chosen instance's centre
    of mass (a cross), its centre region (centre +/- 0.5 * pos_scale * (w, h), dashed) and its
    positive cells filled in its class colour. Right: the level's category map (light gray is
    background). Grid lines sit at ``j * W / S`` in pixel-centre coordinates, so a point lies in
    the cell it is drawn in, exactly as ``solo_lib.targets`` assigns it.

    Args:
        sample: a ``Sample`` or a sample dict (``image``, ``masks``, ``labels``, optional
            ``iscrowd`` and ``class_names``).
        config: a ``SOLOConfig``.
        level: pyramid level in ``[0, config.num_levels)``.
        instance: index of the instance to highlight, in ``[0, N)`` (ignored when N = 0).

    Returns:
        ``(figure, level_targets)``: the figure and the level's ``LevelTargets``.

    Raises:
        ValueError: level or instance out of range.
    """
    from solo_lib.targets import assign_grid_cells, instance_geometry

    s = sample if isinstance(sample, dict) else vars(sample)
    image, masks, labels = np.asarray(s["image"]), np.asarray(s["masks"]), np.asarray(s["labels"])
    n, height, width = masks.shape
    iscrowd = np.asarray(s.get("iscrowd", np.zeros(n, bool)), bool)
    names = s.get("class_names") or [str(c) for c in range(config.num_classes)]
    if not 0 <= level < config.num_levels or (n and not 0 <= instance < n):
        raise ValueError(f"level must be in [0, {config.num_levels}) and instance in [0, {n}), "
                         f"got level={level}, instance={instance}")
    targets = assign_grid_cells(masks, labels, config, iscrowd)[level]
    grid, (lo, hi) = config.grid_sizes[level], config.scale_ranges[level]
    cell_w, cell_h = width / grid, height / grid

    fig, (ax, ax_map) = plt.subplots(1, 2, figsize=(10, 5), gridspec_kw={"width_ratios": [width / height, 1]})
    ax.imshow((0.6 * image + 0.4 * 255).astype(np.uint8))  # faded, so cells and outlines stand out
    for k in range(n):
        if masks[k].any():
            ax.contour(masks[k], levels=[0.5], colors=[class_color(labels[k])],
                       linewidths=2.5 if k == instance else 1.0, linestyles="dotted" if iscrowd[k] else "solid")
    for t in range(1, grid):
        ax.axvline(t * cell_w, color="black", lw=0.4, alpha=0.5)
        ax.axhline(t * cell_h, color="black", lw=0.4, alpha=0.5)
    title = f"level {level}: S={grid}, sqrt(wh) in [{lo:g}, {hi:g}]\n"
    if n == 0:
        title += "no instances"
    else:
        geo = {key: v[0] for key, v in instance_geometry(masks[instance:instance + 1]).items()}
        color, scale = class_color(labels[instance]), float(np.sqrt(geo["w"] * geo["h"]))
        for cell in targets.cells[targets.instances == instance]:
            i, j = divmod(int(cell), grid)
            ax.add_patch(plt.Rectangle((j * cell_w, i * cell_h), cell_w, cell_h, color=color, alpha=0.55, lw=0))
        count = int((targets.instances == instance).sum())
        title += f"instance {instance} ({names[int(labels[instance])]}"
        if geo["area"] == 0:
            title += ", empty mask): 0 positives"
        else:
            hw, hh = 0.5 * config.pos_scale * geo["w"], 0.5 * config.pos_scale * geo["h"]
            ax.add_patch(plt.Rectangle((geo["cx"] - hw, geo["cy"] - hh), 2 * hw, 2 * hh, fill=False,
                                       ec="black", lw=1.2, ls="--"))
            ax.plot(geo["cx"], geo["cy"], marker="+", ms=10, mew=2, color="black")
            reason = (", crowd" if iscrowd[instance] else
                      ", size out of range" if not lo <= scale <= hi else "")
            title += f", sqrt(wh)={scale:.0f}{reason}): {count} positive{'s' * (count != 1)}"
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(height - 0.5, -0.5)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)

    category = targets.category
    rgb = np.full((grid, grid, 3), 0.85)  # background: light gray
    for label in np.unique(category[category < config.num_classes]):
        rgb[category == label] = class_color(label)
    ax_map.imshow(rgb, extent=(0, grid, grid, 0))
    ax_map.set_xticks(np.arange(grid + 1), minor=True)
    ax_map.set_yticks(np.arange(grid + 1), minor=True)
    ax_map.grid(which="minor", color="white", lw=0.5)
    ax_map.tick_params(which="both", length=0, labelsize=7)
    present = [int(c) for c in np.unique(category) if c < config.num_classes]
    handles = [plt.Rectangle((0, 0), 1, 1, color=class_color(c), label=names[c]) for c in present]
    handles.append(plt.Rectangle((0, 0), 1, 1, color=(0.85,) * 3, label="background"))
    fig.legend(handles=handles, loc="lower right", ncol=len(handles), fontsize=8, frameon=False)
    ax_map.set_title(f"category map {grid}x{grid}: {int((category < config.num_classes).sum())} "
                     f"positive cells, {len(targets.cells)} (cell, instance) pairs", fontsize=9)
    fig.tight_layout(rect=(0, 0.04, 1, 1))  # room for the legend
    return fig, targets


def grid_explorer(dataset, config):
    """An ipywidgets explorer over :func:`grid_view` for a ``CocoDataset``, each image shown on
    its canvas (resized to ``config.image_scale`` and padded, ``solo_lib.geometry.on_canvas``).

    Its children are, in order: image index, level and instance sliders. The instance index is
    clamped to the image's last instance. After ``w.children[i].value = ...`` the widget re-runs
    and ``w.result`` holds the shown level's ``LevelTargets``.
    """
    import ipywidgets as widgets

    from solo_lib.geometry import on_canvas

    samples = {}
    most = max([dataset.num_annotations(image_id) for image_id in dataset.image_ids] + [1])

    def show(index=0, level=0, instance=0):
        if index not in samples:
            samples[index] = on_canvas(dataset[index], config)  # as training sees it
        sample = samples[index]
        instance = min(instance, max(len(sample.labels) - 1, 0))
        fig, targets = grid_view(sample, config, level, instance)
        plt.show()
        return targets

    return widgets.interactive(
        show,
        index=widgets.IntSlider(0, 0, len(dataset) - 1, description="image"),
        level=widgets.IntSlider(0, 0, config.num_levels - 1, description="level"),
        instance=widgets.IntSlider(0, 0, most - 1, description="instance"),
    )


def draw_predictions(ax, image, result, class_names, score_thr=0.0, *, title=None, alpha=0.5):
    """Draws predicted instances: class-coloured masks, outlines and "name 0.87" labels.

    Args:
        ax: a matplotlib Axes.
        image: ``(H, W, 3)`` uint8, the image the prediction was made on.
        result: ``solo_lib.inference.predict``'s dict: ``masks`` ``(K, H, W)`` binary, ``labels``
            ``(K,)`` and ``scores`` ``(K,)``.
        class_names: names indexed by label.
        score_thr: draw only instances with ``score >= score_thr``.
        title: optional axes title.
        alpha: mask opacity.

    Returns:
        ``(K',)`` int indices into ``result`` of the drawn instances, highest score first.
    """
    masks, labels, scores = (np.asarray(result[key]) for key in ("masks", "labels", "scores"))
    shown = np.flatnonzero(scores >= score_thr)
    shown = shown[np.argsort(-scores[shown], kind="stable")]
    order = shown[::-1]  # lowest score first, so the best instance is painted on top
    ax.imshow(overlay_masks(image, masks[order], labels[order], alpha))
    for k in order:
        mask, color = masks[k].astype(bool), class_color(labels[k])
        if not mask.any():
            continue
        ax.contour(mask, levels=[0.5], colors=[color], linewidths=1.0)
        ys, xs = np.nonzero(mask)
        ax.text(xs.min() - 0.5, ys.min() - 1.5, f"{class_names[int(labels[k])]} {scores[k]:.2f}", color="white",
                fontsize=7, bbox={"facecolor": color, "pad": 1, "lw": 0})
    height, width = np.shape(image)[:2]
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(height - 0.5, -0.5)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    return shown


def nms_view(image, outputs, config, class_names, *, kernel="gaussian", sigma=2.0, update_thr=0.05, score_thr=0.1):
    """Callback of notebook 10's explorer: the same network outputs, post-processed with the
    chosen Matrix NMS settings. ``sigma = 0`` (gaussian) decays nothing: that is "no NMS".

    Args:
        image: ``(H, W, 3)`` uint8, the image the outputs were computed on (before
            ``solo_lib.inference.preprocess`` resized and padded it).
        outputs: the model's outputs for that one canvas.
        config: the model's ``SOLOConfig``.
        class_names: names indexed by label.
        kernel: ``"gaussian"`` or ``"linear"``.
        sigma: gaussian decay strength (the code convention: 2.0 = the paper's 0.5).
        update_thr: scores below this after the decay are dropped.
        score_thr: category score threshold before NMS.

    Returns:
        ``(figure, result)`` with result the post-processed masks, labels and scores.
    """
    from solo_lib.geometry import input_geometry
    from solo_lib.inference import postprocess

    cfg = config.replace(nms_kernel=kernel, nms_sigma=sigma, update_thr=update_thr, score_thr=score_thr)
    canvas = (outputs["mask_feature"].shape[1] * cfg.mask_stride, outputs["mask_feature"].shape[2] * cfg.mask_stride)
    resized, _ = input_geometry(image.shape[0], image.shape[1], cfg.image_scale)
    result = postprocess(outputs, cfg, resized, canvas, original_size=image.shape[:2])
    fig, ax = plt.subplots(figsize=(5, 5))
    draw_predictions(ax, image, result, class_names,
                     title=f"{kernel}, sigma {sigma:g}, keep >= {update_thr:g}, score > {score_thr:g}: "
                           f"{len(result['labels'])} masks")
    return fig, result


def nms_explorer(model, image, class_names):
    """ipywidgets explorer over :func:`nms_view`; children: kernel, sigma, update_thr, score_thr.

    The network runs once; each change only re-runs the post-processing.
    """
    import ipywidgets as widgets

    from solo_lib.inference import preprocess

    outputs = model(preprocess(image, model.config)[0], training=False)

    def show(kernel="gaussian", sigma=2.0, update_thr=0.05, score_thr=0.1):
        fig, result = nms_view(image, outputs, model.config, class_names, kernel=kernel, sigma=sigma,
                               update_thr=update_thr, score_thr=score_thr)
        plt.show()
        return result

    return widgets.interactive(
        show,
        kernel=widgets.Dropdown(options=("gaussian", "linear"), value="gaussian", description="kernel"),
        sigma=widgets.FloatSlider(2.0, min=0.0, max=8.0, step=0.5, description="sigma"),
        update_thr=widgets.FloatSlider(0.05, min=0.0, max=0.5, step=0.01, description="keep >="),
        score_thr=widgets.FloatSlider(0.1, min=0.02, max=0.5, step=0.01, description="score >"),
    )
