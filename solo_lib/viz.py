"""Pictures of samples and predictions, and the widget callbacks of notebooks 03 and 04.

Every widget callback here is a pure function of its arguments that returns a figure and the
arrays it drew, so tests can call it and notebooks only wire sliders to it. The palette and label
placement every figure shares live in :mod:`solo_lib.viz_style`; figures of one notebook's topic
in the ``solo_lib.viz_*`` modules. Slightly over ~300 lines: notebooks 00-04 and 08 call what is
left here as ``viz.*`` (the instance drawing they all use, and the two explorers built on it).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from solo_lib.viz_style import LABEL_GID, class_color, overlay_masks, separate_labels

BACKGROUND = (0.85, 0.85, 0.85)  # light gray: the category map's background cells


def setup_notebook(dpi: int = 80) -> None:
    """Inline figures as JPEG at a modest dpi: the course's textured images make PNG figures
    large, and executed notebooks are committed. Call once in a notebook's setup cell."""
    from matplotlib_inline.backend_inline import set_matplotlib_formats

    set_matplotlib_formats("jpeg")
    plt.rcParams["figure.dpi"] = dpi
    plt.rcParams["savefig.dpi"] = dpi


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


def legend_patch(color, label: str):
    """One legend entry: a square of ``color`` named ``label``."""
    return plt.Rectangle((0, 0), 1, 1, color=color, label=label)


def legend_handles(class_names, labels=None):
    """Legend patches in the class palette: one per class, or one per label in ``labels``."""
    labels = range(len(class_names)) if labels is None else labels
    return [legend_patch(class_color(c), class_names[c]) for c in labels]


def augmentation_choices() -> tuple[str, ...]:
    """The transforms notebook 03's explorer offers: ``"none"``, each registered augmentation that
    has a preview (:mod:`solo_lib.data.augment_registry`), in registration order, and ``"random"``
    (the whole :func:`~solo_lib.data.augment.augment`)."""
    from solo_lib.data import augment  # noqa: F401  (registers the built-in augmentations)
    from solo_lib.data.augment_registry import registered_augmentations

    return ("none", *(a.name for a in registered_augmentations() if a.preview is not None), "random")


def augmentation_view(sample: dict, class_names, transform: str = "random", amount: float = 0.5, seed: int = 0):
    """Callback of notebook 03's explorer: one transform, before and after.

    Args:
        sample: a sample dict (see ``solo_lib.data.augment``).
        class_names: names indexed by label.
        transform: one of :func:`augmentation_choices`.
        amount: strength in [0, 1], read by the augmentation's preview: for the built-ins the
            brightness shift (``2 * amount - 1`` of 255), the scale factor (``0.5 + amount``), the
            crop window side (``1 - 0.7 * amount`` of the image, at the seeded offset); ignored by
            ``flip`` and ``none``.
        seed: seed of the random choices (crop offset, ``random``).

    Returns:
        ``(figure, augmented)``: the figure and the augmented sample as numpy arrays.
    """
    from solo_lib.data.augment import augment
    from solo_lib.data.augment_config import AugmentConfig
    from solo_lib.data.augment_registry import registered_augmentations

    choices = augmentation_choices()
    if transform not in choices:
        raise ValueError(f"transform must be one of {choices}, got {transform!r}")
    src = _to_numpy(sample)
    if transform == "none":
        out = src
    elif transform == "random":
        out = augment(src, seed=[seed, 0], config=AugmentConfig(crop_size=(160, 160)))
    else:
        preview = next(a.preview for a in registered_augmentations() if a.name == transform)
        out = preview(src, amount, seed)
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
        transform=widgets.Dropdown(options=augmentation_choices(), value="flip", description="transform"),
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
    rgb = np.full((grid, grid, 3), BACKGROUND)
    for label in np.unique(category[category < config.num_classes]):
        rgb[category == label] = class_color(label)
    ax_map.imshow(rgb, extent=(0, grid, grid, 0))
    ax_map.set_xticks(np.arange(grid + 1), minor=True)
    ax_map.set_yticks(np.arange(grid + 1), minor=True)
    ax_map.grid(which="minor", color="white", lw=0.5)
    ax_map.tick_params(which="both", length=0, labelsize=7)
    present = [int(c) for c in np.unique(category) if c < config.num_classes]
    handles = [*legend_handles(names, present), legend_patch(BACKGROUND, "background")]
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
