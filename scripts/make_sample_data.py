"""Generate the course's tiny sample dataset, ``data/sample_coco``.

Usage: ``python scripts/make_sample_data.py [OUT_DIR]`` (default: ``data/sample_coco``).

It draws 18 synthetic images (12 train, 6 val) of four classes—``disc``, ``block``, ``leaf``
and ``star``—saves each as a JPEG with the LabelMe JSON a person would have drawn for it, and
converts both splits to COCO with ``solo_lib.data.labelme``. Every run writes byte-identical
files (with the same numpy, Pillow and contourpy versions), so a test can check that the
committed data still matches this script. ``OUT_DIR/README.md`` is never touched.

How an image is made:

1. A ``SceneSpec`` fixes the image size, seed, number of objects and their size range, plus
   optional hand-placed objects (a large one, or a block cut in two by a bar) and a smudge.
2. Each object is an implicit shape in its own rotated frame ``(u, v)``, tested at pixel
   centres ``(x + 0.5, y + 0.5)``: pixel ``x`` covers ``[x, x + 1)``, as in COCO.
3. Objects are painted in z-order into the canvas and into a label map, so later objects
   occlude earlier ones. A random object is re-drawn (up to 40 times, then left out) if it
   would hide more than half of an earlier one, leave it a thin sliver, punch a hole in it or
   cut it into pieces: every object stays one solid region a person can outline.
4. The annotation is the VISIBLE region: its outline is traced with contourpy and simplified
   with Douglas-Peucker to at most 40 vertices (4 for a plain block, typically 6-20), like
   clicks in LabelMe. Unoccluded round discs and axis-aligned blocks get LabelMe's ``circle``
   and ``rectangle`` shapes instead.
"""

from __future__ import annotations

import argparse
import colorsys
import dataclasses
import json
import shutil
from pathlib import Path

import contourpy
import numpy as np
from PIL import Image, ImageFilter

from solo_lib.data.labelme import convert_labelme_dir, write_coco_json

REPO_ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("disc", "block", "leaf", "star")
HUES = {"disc": (-0.06, 0.05), "block": (0.55, 0.70), "leaf": (0.22, 0.38), "star": (0.11, 0.16)}
JPEG_OPTIONS = {"quality": 92, "subsampling": 2, "optimize": False, "progressive": False}
MIN_PIXELS = 20  # smallest visible region we keep as an instance
MIN_VISIBLE = 0.5  # fraction of an object that must stay visible


@dataclasses.dataclass(frozen=True)
class Instance:
    """One object. ``a``, ``b``: half-length and half-width (disc, block, leaf) or outer and
    inner radius (star), in px; ``angle`` in radians; ``parts``: visible pieces it should have."""

    label: str
    cx: float
    cy: float
    a: float
    b: float
    angle: float = 0.0
    parts: int = 1


@dataclasses.dataclass(frozen=True)
class SceneSpec:
    """What one image should contain; ``fixed`` objects are painted first, bottom of z-order."""

    name: str
    width: int
    height: int
    seed: int
    count: int
    min_size: float = 8.0
    max_size: float = 80.0
    fixed: tuple[Instance, ...] = ()
    smudge: bool = False


# A long block behind a thin bar: one instance seen as two pieces (two polygons, one group_id).
_SPLIT = (Instance("block", 120, 100, 92, 15, 0.12, parts=2), Instance("block", 128, 96, 70, 4, 1.45))
TRAIN_SPECS = (
    SceneSpec("train_000", 256, 256, 100, 4, 24, 80, fixed=(Instance("disc", 128, 124, 86, 86),)),
    SceneSpec("train_001", 256, 192, 101, 3, 40, 110),
    SceneSpec("train_002", 256, 192, 102, 3, 14, 50, fixed=_SPLIT),
    SceneSpec("train_003", 192, 256, 103, 5, 14, 70),
    SceneSpec("train_004", 256, 256, 104, 20, 6, 40),
    SceneSpec("train_005", 240, 176, 105, 4, 16, 60, smudge=True),
    SceneSpec("train_006", 224, 224, 106, 2, 60, 140),
    SceneSpec("train_007", 176, 240, 107, 5, 8, 50),
    SceneSpec("train_008", 256, 160, 108, 4, 12, 60),
    SceneSpec("train_009", 256, 256, 109, 18, 6, 48),
    SceneSpec("train_010", 192, 192, 110, 3, 16, 60, fixed=(Instance("leaf", 96, 96, 96, 40, 0.7),)),
    SceneSpec("train_011", 240, 240, 111, 5, 6, 30),
)
VAL_SPECS = (
    SceneSpec("val_000", 256, 256, 200, 4, 20, 100),
    SceneSpec("val_001", 256, 192, 201, 16, 6, 40),
    SceneSpec("val_002", 192, 256, 202, 3, 20, 60, fixed=(Instance("star", 96, 130, 92, 42, -0.3),)),
    SceneSpec("val_003", 240, 176, 203, 5, 8, 60),
    SceneSpec("val_004", 224, 224, 204, 2, 40, 120),
    SceneSpec("val_005", 256, 192, 205, 0),  # no objects at all: the pipeline must cope
)

IMAGE_SIZES = ((256, 256), (256, 192), (192, 256), (240, 176), (224, 224), (176, 240), (256, 160), (192, 192),
               (240, 240))
# Scenes of the pretraining set (scripts/pretrain_shapes.py): kinds of image, drawn with equal odds,
# as (fewest, most objects + 1, smallest, largest size in px): a few large objects, a handful of
# medium ones, a crowd of small ones, several small ones.
PRETRAINING_KINDS = ((2, 5, 30, 130), (3, 7, 10, 70), (12, 22, 6, 45), (4, 9, 6, 40))
PRETRAINING_FIRST_SEED = 1000  # the sample's seeds are 100-111 and 200-205: no scene can repeat


def pretraining_specs(count: int, first_seed: int = PRETRAINING_FIRST_SEED) -> tuple[SceneSpec, ...]:
    """Random scenes for the shapes pretraining set: ``shapes_000`` ... with seeds ``first_seed``
    onwards, disjoint from the sample dataset's. Same classes, looks and size mix as the sample
    images, but none of them: the model pretrained on these has never seen a sample image."""
    rng = np.random.default_rng(first_seed)
    specs = []
    for i in range(count):
        width, height = IMAGE_SIZES[int(rng.integers(len(IMAGE_SIZES)))]
        low, high, min_size, max_size = PRETRAINING_KINDS[int(rng.integers(len(PRETRAINING_KINDS)))]
        specs.append(SceneSpec(f"shapes_{i:03d}", width, height, first_seed + i, int(rng.integers(low, high)),
                               min_size, max_size))
    return tuple(specs)


@dataclasses.dataclass
class Scene:
    """A rendered image: ``image`` (H, W, 3) uint8; ``instances`` in z-order with their whole
    and visible (H, W) bool masks; ``ignore_polygon`` around the smudge, or None."""

    image: np.ndarray
    instances: list[Instance]
    whole: list[np.ndarray]
    visible: list[np.ndarray]
    ignore_polygon: np.ndarray | None


def local_coords(inst: Instance, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in the object's frame: ``u`` along its long axis, ``v`` across."""
    cos, sin = np.cos(inst.angle), np.sin(inst.angle)
    dx, dy = xs - inst.cx, ys - inst.cy
    return cos * dx + sin * dy, -sin * dx + cos * dy


def shape_mask(inst: Instance, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean mask of the pixels whose centre lies inside the object's shape."""
    a, b = inst.a, inst.b
    if inst.label == "disc":  # ellipse
        return (u / a) ** 2 + (v / b) ** 2 <= 1.0
    if inst.label == "block":  # rectangle
        return (np.abs(u) <= a) & (np.abs(v) <= b)
    if inst.label == "leaf":  # lens: two circles of radius c + b, centres c px either side of u
        c = (a * a - b * b) / (2.0 * b)  # chosen so the tips are at u = +-a
        return u**2 + (np.abs(v) + c) ** 2 <= (c + b) ** 2
    # Star: fold the polar angle into half an arm, [0, 36 deg], then test which side of the
    # edge from the outer tip (a, 0) to the inner corner (b at 36 deg) the point lies on.
    arm = 2.0 * np.pi / 5.0
    t = np.mod(np.arctan2(v, u), arm)
    t = np.minimum(t, arm - t)
    r = np.hypot(u, v)
    qx, qy = r * np.cos(t), r * np.sin(t)
    px, py = b * np.cos(arm / 2), b * np.sin(arm / 2)
    return (px - a) * qy - py * (qx - a) >= 0.0  # same side as the centre


def smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int, channels: int) -> np.ndarray:
    """(H, W, channels) smooth noise in [-1, 1]: a random (cells+1)^2 grid, smoothly interpolated."""
    grid = rng.uniform(-1.0, 1.0, (cells + 1, cells + 1, channels))
    gy, gx = np.linspace(0, cells, height), np.linspace(0, cells, width)
    y0, x0 = np.minimum(gy.astype(int), cells - 1), np.minimum(gx.astype(int), cells - 1)
    fy, fx = (gy - y0)[:, None, None], (gx - x0)[None, :, None]
    fy, fx = fy * fy * (3 - 2 * fy), fx * fx * (3 - 2 * fx)  # smoothstep: no visible grid lines
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
    bottom = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def background(rng: np.random.Generator, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """(H, W, 3) float background: a muted colour, a gradient, smooth noise, maybe faint stripes."""
    height, width = xs.shape
    base = np.array(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.05, 0.25), rng.uniform(0.45, 0.75)))
    t = rng.uniform(0, 2 * np.pi)
    ramp = 0.25 * ((xs * np.cos(t) + ys * np.sin(t)) / max(height, width) - 0.5)
    s, period, amplitude = rng.uniform(0, np.pi), rng.uniform(8, 24), rng.choice([0.0, 0.03])
    stripes = amplitude * np.sin(2 * np.pi * (xs * np.cos(s) + ys * np.sin(s)) / period)
    cells = int(rng.integers(3, 7))  # mostly brightness blotches, a little colour
    noise = 0.1 * smooth_noise(rng, height, width, cells, 1) + 0.04 * smooth_noise(rng, height, width, cells, 3)
    grain = rng.normal(0.0, 0.012, (height, width, 1))
    return np.clip(base + (ramp + stripes)[..., None] + noise + grain, 0.0, 1.0)


def texture(inst: Instance, rng: np.random.Generator, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(H, W, 3) colours for one object: a per-instance colour in its class's hue family,
    modulated by the class's pattern, expressed in the object's own frame so it moves with it."""
    hue = rng.uniform(*HUES[inst.label]) % 1.0
    colour = np.array(colorsys.hsv_to_rgb(hue, rng.uniform(0.55, 0.9), rng.uniform(0.7, 0.95)))
    a, b = inst.a, inst.b
    if inst.label == "disc":  # radial gradient, highlight up-left of centre
        shade = 1.25 - 0.55 * np.hypot((u + 0.35 * a) / a, (v + 0.35 * b) / b)
    elif inst.label == "block":  # diagonal stripes
        period = rng.uniform(5, 10)
        shade = np.where(np.sin(2 * np.pi * (u + v) / period) > 0, 1.1, 0.72)
    elif inst.label == "leaf":  # midrib plus side veins running towards the tip
        period = max(4.0, a / 4)
        veins = (np.abs(v) < 0.9) | (np.mod(np.abs(u) * 0.8 - np.abs(v), period) < 1.0)
        shade = np.where(veins, 1.3, 0.9 - 0.15 * u / a)
    else:  # star: speckle, brighter towards the centre
        shade = (1.15 - 0.35 * np.hypot(u, v) / a) * rng.uniform(0.7, 1.15, u.shape)
    return np.clip(colour * shade[..., None], 0.0, 1.0)


def erode(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` whose four neighbours are also in ``mask``."""
    p = np.pad(mask, 1)
    return mask & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]


def paint(canvas: np.ndarray, mask: np.ndarray, colours: np.ndarray) -> None:
    """Paints ``colours`` into ``canvas`` (in place) where ``mask`` is set, with a dark rim."""
    canvas[mask] = colours[mask]
    canvas[mask & ~erode(mask)] *= 0.55


def outlines(mask: np.ndarray) -> list[list[np.ndarray]]:
    """Outline of each connected piece of ``mask``: its outer ring, then one ring per hole.

    Each ring is a closed (N, 2) array of (x, y), first point repeated last. The 0.5 iso-line
    of the 0/1 mask sampled at pixel centres runs along pixel edges, corners cut diagonally.
    """
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    z = np.pad(mask[y0:y1, x0:x1], 1).astype(float)  # zero border: every ring closes
    x, y = np.arange(x0 - 1, x1 + 1) + 0.5, np.arange(y0 - 1, y1 + 1) + 0.5
    gen = contourpy.contour_generator(x=x, y=y, z=z, fill_type=contourpy.FillType.OuterOffset)
    points, offsets = gen.filled(0.5, 1.5)  # OuterOffset: per piece, the rings' start offsets
    return [[p[start:stop] for start, stop in zip(o[:-1], o[1:])] for p, o in zip(points, offsets)]


def douglas_peucker(points: np.ndarray, tolerance: float) -> np.ndarray:
    """Douglas-Peucker: keeps the vertices of a polyline that deviate more than ``tolerance`` px."""
    keep = np.zeros(len(points), bool)
    keep[[0, -1]] = True
    stack = [(0, len(points) - 1)]
    while stack:
        i, j = stack.pop()
        if j - i < 2:
            continue
        (dx, dy), rel = points[j] - points[i], points[i + 1 : j] - points[i]
        length = np.hypot(dx, dy)  # 0 for a closed ring: then use the distance to points[i]
        dist = np.abs(dx * rel[:, 1] - dy * rel[:, 0]) / length if length > 0 else np.hypot(*rel.T)
        k = i + 1 + int(np.argmax(dist))
        if dist[k - i - 1] > tolerance:
            keep[k] = True
            stack += [(i, k), (k, j)]
    return points[keep]


def simplify_ring(ring: np.ndarray, area: float, min_vertices: int = 4, max_vertices: int = 40) -> np.ndarray:
    """Simplifies a closed ring (first point repeated last) of an ``area`` px region to the
    open vertex list a person would click.

    A person zooms in on small objects, so the tolerance grows with size from 0.4 to 0.8 px;
    it is then raised if that leaves too many vertices, lowered if too few.
    """
    simplify = lambda tol: douglas_peucker(ring, tol)[:-1]  # noqa: E731 (drop the repeat)
    start = float(np.clip(0.07 * np.sqrt(area), 0.4, 0.8))
    poly = simplify(start)
    for tol in (1.0, 1.3, 1.7, 2.2):
        if len(poly) <= max_vertices:
            break
        poly = simplify(tol)
    for tol in (0.3, 0.15, 0.0):
        if len(poly) >= min_vertices:
            break
        poly = simplify(tol)
    return poly


def sample_instance(rng: np.random.Generator, box: tuple, min_size: float, max_size: float) -> Instance:
    """A random object with its centre in ``box`` = (x0, x1, y0, y1) and a log-uniform size
    (about sqrt(w * h) of its unrotated box) in [min_size, max_size]."""
    label = CLASSES[int(rng.integers(len(CLASSES)))]
    size = float(np.exp(rng.uniform(np.log(min_size), np.log(max_size))))
    cx, cy = float(rng.uniform(box[0], box[1])), float(rng.uniform(box[2], box[3]))
    angle = float(rng.uniform(0, np.pi))
    if label == "star":
        return Instance(label, cx, cy, size / 1.9, size / 1.9 * float(rng.uniform(0.42, 0.52)), angle)
    if label == "disc" and rng.random() < 0.4:
        return Instance(label, cx, cy, size / 2, size / 2, angle)  # round: a candidate circle
    if label == "block" and rng.random() < 0.4:
        angle = 0.0  # axis-aligned: a candidate rectangle
    aspect = rng.uniform(*{"disc": (0.55, 0.9), "block": (0.35, 0.9), "leaf": (0.35, 0.55)}[label])
    a = size / (2 * float(np.sqrt(aspect)))
    return Instance(label, cx, cy, a, a * aspect, angle)


def keeps_annotatable(
    mask: np.ndarray, labels: np.ndarray, instances: list, whole: list, blocked: np.ndarray
) -> bool:
    """Whether painting a new object on top keeps every object easy to outline.

    Args:
        mask: (H, W) bool, the new object.
        labels: (H, W) int, index of the top object per pixel so far (-1: background).
        instances, whole: the objects so far and their whole (unoccluded) masks.
        blocked: (H, W) bool, where no object may go (the smudge).

    Returns:
        True if the new object and every object it covers keep MIN_PIXELS and MIN_VISIBLE of
        themselves visible, as a solid region (not a sliver) without holes, in the expected
        number of pieces.
    """
    if (mask & blocked).any():
        return False
    regions = [(mask, mask.sum(), 1)]
    for i in np.unique(labels[mask]):
        if i >= 0:
            regions.append(((labels == i) & ~mask, whole[i].sum(), instances[i].parts))
    for region, full_area, parts in regions:
        area = region.sum()
        if area < max(MIN_PIXELS, MIN_VISIBLE * full_area) or erode(region).sum() < 0.4 * area:
            return False
        pieces = outlines(region)
        if len(pieces) != parts or any(len(rings) > 1 for rings in pieces):  # no holes either
            return False
    return True


def paint_smudge(canvas: np.ndarray, rng: np.random.Generator, xs: np.ndarray, ys: np.ndarray) -> tuple:
    """Paints a blurred cluster of tiny shapes nobody could label reliably (in place).

    Returns:
        ``(blocked, polygon)``: the (H, W) region other objects must keep out of, and the
        ``__ignore__`` polygon a person would draw around the smudge.
    """
    height, width = xs.shape
    cx, cy = rng.uniform(0.3, 0.7) * width, rng.uniform(0.3, 0.7) * height
    for _ in range(9):
        inst = sample_instance(rng, (cx - 15, cx + 15, cy - 10, cy + 10), 7, 14)
        u, v = local_coords(inst, xs, ys)
        paint(canvas, shape_mask(inst, u, v), texture(inst, rng, u, v))
    blurred = Image.fromarray(np.round(canvas * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(2.5))
    radius = np.hypot((xs - cx) / 24, (ys - cy) / 17)
    weight = np.clip((1.2 - radius) / 0.4, 0, 1)[..., None]  # fully smudged inside, soft edge
    canvas[:] = canvas * (1 - weight) + np.asarray(blurred) / 255.0 * weight
    t = 2 * np.pi * np.arange(10) / 10 + rng.uniform(-0.15, 0.15, 10)  # 10 rough clicks around it
    polygon = np.stack([cx + 30 * np.cos(t), cy + 22 * np.sin(t)], axis=1)
    return radius < 1.6, polygon


def render_scene(spec: SceneSpec) -> Scene:
    """Draws one image and the visible mask of each of its objects.

    Args:
        spec: what to draw; ``spec.seed`` seeds every random choice, so the same spec always
            gives the same scene.

    Returns:
        The Scene; ``scene.visible[i]`` is what the annotation of object ``i`` must outline.
    """
    rng = np.random.default_rng(spec.seed)
    ys, xs = np.mgrid[0 : spec.height, 0 : spec.width] + 0.5  # pixel centres
    canvas = background(rng, xs, ys)
    labels = np.full((spec.height, spec.width), -1)  # index of the top object, -1: background
    blocked, ignore_polygon = np.zeros_like(labels, bool), None
    if spec.smudge:
        blocked, ignore_polygon = paint_smudge(canvas, rng, xs, ys)
    instances, whole = [], []

    def add(inst: Instance, u: np.ndarray, v: np.ndarray, mask: np.ndarray) -> None:
        paint(canvas, mask, texture(inst, rng, u, v))
        labels[mask] = len(instances)
        instances.append(inst)
        whole.append(mask)

    for inst in spec.fixed:  # placed by hand: painted as they are
        u, v = local_coords(inst, xs, ys)
        add(inst, u, v, shape_mask(inst, u, v))
    box = (0.1 * spec.width, 0.9 * spec.width, 0.1 * spec.height, 0.9 * spec.height)
    for _ in range(spec.count):
        for _attempt in range(40):  # a random object gets 40 tries to fit, then is left out
            inst = sample_instance(rng, box, spec.min_size, spec.max_size)
            u, v = local_coords(inst, xs, ys)
            mask = shape_mask(inst, u, v)
            if keeps_annotatable(mask, labels, instances, whole, blocked):
                add(inst, u, v, mask)
                break
    visible = [labels == i for i in range(len(instances))]
    image = np.round(canvas * 255).astype(np.uint8)
    return Scene(image, instances, whole, visible, ignore_polygon)


def labelme_shapes(scene: Scene) -> list[dict]:
    """The shapes a person would draw in LabelMe for ``scene``, in z-order."""
    shapes, next_group = [], 1
    for inst, whole, visible in zip(scene.instances, scene.whole, scene.visible):
        on_border = whole[[0, -1]].any() or whole[:, [0, -1]].any()
        unoccluded = np.array_equal(whole, visible) and not on_border
        group = None
        if unoccluded and inst.label == "disc" and inst.a == inst.b:  # round: centre + rim point
            kind, polys = "circle", [[[inst.cx, inst.cy], [inst.cx + inst.a * np.cos(inst.angle),
                                                           inst.cy + inst.a * np.sin(inst.angle)]]]
        elif unoccluded and inst.label == "block" and inst.angle == 0.0:
            ys, xs = np.nonzero(visible)  # two opposite corners, on pixel edges
            kind, polys = "rectangle", [[[xs.min(), ys.min()], [xs.max() + 1, ys.max() + 1]]]
        else:
            # Outer rings only: a person does not outline holes (our scenes have none anyway).
            kind, polys = "polygon", [simplify_ring(rings[0], visible.sum()) for rings in outlines(visible)]
            if len(polys) > 1:
                group, next_group = next_group, next_group + 1
        for points in polys:
            shapes.append(_shape(inst.label, points, kind, group))
    if scene.ignore_polygon is not None:
        shapes.append(_shape("__ignore__", scene.ignore_polygon, "polygon", None))
    return shapes


def _shape(label: str, points, kind: str, group_id: int | None) -> dict:
    points = [[round(float(x), 2), round(float(y), 2)] for x, y in points]
    return {"label": label, "points": points, "group_id": group_id, "description": "",
            "shape_type": kind, "flags": {}, "mask": None}


def write_image(spec: SceneSpec, folder: Path) -> None:
    """Writes ``<name>.jpg`` and LabelMe's ``<name>.json`` for one scene into ``folder``."""
    scene = render_scene(spec)
    Image.fromarray(scene.image).save(folder / f"{spec.name}.jpg", "JPEG", **JPEG_OPTIONS)
    record = {"version": "5.5.0", "flags": {}, "shapes": labelme_shapes(scene), "imagePath": f"{spec.name}.jpg",
              "imageData": None, "imageHeight": spec.height, "imageWidth": spec.width}
    (folder / f"{spec.name}.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def write_split(specs, folder: Path, coco_file: Path) -> None:
    """Writes the LabelMe files of ``specs`` into ``folder`` and their COCO conversion to ``coco_file``."""
    folder.mkdir(parents=True)
    for spec in specs:
        write_image(spec, folder)
    labels_txt = folder.parent / "labels.txt"
    # LabelMe's format
    labels_txt.write_text("\n".join(("__ignore__", "_background_") + CLASSES) + "\n", encoding="utf-8")
    coco_file.parent.mkdir(parents=True, exist_ok=True)
    write_coco_json(convert_labelme_dir(folder, labels_file=labels_txt), coco_file)


def generate(out_dir: str | Path) -> None:
    """Writes the whole dataset: LabelMe files, then their COCO conversion.

    Args:
        out_dir: dataset folder; its ``labelme/`` and ``annotations/`` are replaced, anything
            else in it (the README) is left alone.
    """
    out_dir = Path(out_dir)
    labelme_dir = out_dir / "labelme"
    for generated in (labelme_dir, out_dir / "annotations"):
        shutil.rmtree(generated, ignore_errors=True)
    for split, specs in (("train", TRAIN_SPECS), ("val", VAL_SPECS)):
        write_split(specs, labelme_dir / split, out_dir / "annotations" / f"instances_{split}.json")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", nargs="?", default=REPO_ROOT / "data" / "sample_coco", type=Path)
    generate(parser.parse_args(argv).out_dir)


if __name__ == "__main__":
    main()
