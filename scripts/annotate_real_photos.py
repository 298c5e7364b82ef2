"""How data/real_photos was annotated: the outlines derived from the photos, written as LabelMe files.

This is the authors' record, not part of the course's install: it needs scikit-image and SciPy,
which the course does not pin (nothing else uses them). To re-run it:

    python -m venv /tmp/skenv && /tmp/skenv/bin/pip install scikit-image==0.26.0
    /tmp/skenv/bin/python scripts/annotate_real_photos.py data/real_photos/labelme

It copies three photos out of scikit-image's bundled data (licences in data/real_photos/README.md)
and writes, beside each, the LabelMe JSON a person would save: one polygon per object, points on
the object's outline. A person clicking in LabelMe follows the edges by eye; here the edges come
from classical segmentation, then every outline was checked by eye against zoomed views of the
photo and corrected where the segmentation was wrong (notebook 08b draws them all, and the coffee
photo's corrected part zoomed):

* ``coins`` (Greek coins from Pompeii, 24 coins in 4 rows) is cut between its second and third
  rows (y = 150, where no coin is) into ``coins_top`` (train) and ``coins_bottom`` (held out).
  Coins: scikit-image's own coins recipe (Sobel elevation map, watershed from dark and bright
  markers, holes filled), then each coin's convex hull (a coin is a convex disc; the hull closes a
  notch where a dark patina meets the dark background).
* ``coffee`` (a cup on a saucer with a spoon): a random walker on the Lab image from hand-drawn
  scribbles (background, saucer, cup, spoon), then three corrections read off zoomed views: the
  saucer's rim is an ellipse fitted with RANSAC to the outline of everything on the table; the
  cup above its centre line is its rim, another fitted ellipse (the walker leaked into the wood
  between cup and spoon); and below the dark edge of the cup's foot is the saucer in shadow. The
  spoon passes behind the cup, so it is seen as two pieces: two polygons with one ``group_id``.
  The glossy cup reflects the spoon's bowl; that patch is neither clearly cup nor spoon, so it is
  an ``__ignore__`` region.

Run twice, it writes the same bytes (the random walker and RANSAC are deterministic here).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage as ndi
from skimage import color, data, filters, measure, morphology, segmentation

COIN_CUT = 150  # y between the second and third rows of coins
# Scribbles for the random walker on `coffee`: label -> polylines of (x, y) image pixels.
COFFEE_SCRIBBLES = {
    1: [[(5, 5), (160, 5), (160, 40), (5, 60)], [(500, 20), (595, 20), (595, 395), (500, 395)],  # table
        [(5, 120), (60, 150), (40, 300), (5, 395)], [(30, 390), (300, 398), (470, 398)], [(200, 8), (420, 8)],
        [(440, 40), (560, 100)], [(485, 200), (495, 330)], [(30, 180), (60, 280)]],
    2: [[(95, 150), (90, 250), (120, 320), (200, 360), (300, 375), (420, 340), (465, 260), (465, 170), (440, 120)],
        [(120, 120), (160, 100)], [(160, 200), (150, 300)], [(420, 150), (440, 250), (420, 320)],
        [(270, 330), (320, 340)]],  # saucer
    3: [[(200, 60), (300, 40), (390, 60)], [(230, 140), (300, 170), (360, 140)],
        [(210, 180), (260, 250), (340, 250), (380, 200)], [(218, 265), (225, 290)], [(240, 120), (240, 200)],
        [(300, 100), (300, 190)], [(380, 100), (380, 190)], [(285, 270), (330, 275)]],  # cup
    4: [[(410, 75), (410, 120)], [(386, 215), (378, 245)], [(345, 285), (380, 290)], [(350, 305), (380, 310)]],  # spoon
}
# The glossy cup reflects the spoon's bowl: a patch a person cannot call cup or spoon.
COFFEE_IGNORE = [(318, 246), (325, 238), (345, 236), (352, 245), (345, 256), (330, 260), (320, 256)]
# Below the dark edge of the cup's foot (read off a 6x zoom) is the saucer in the cup's shadow.
CUP_FOOT = [(250, 277), (265, 281), (280, 284), (300, 284), (320, 277), (332, 266), (332, 320), (250, 320)]


def polygon(mask: np.ndarray, tolerance: float = 0.8) -> list[list[float]]:
    """The outline of a binary mask's largest piece as LabelMe points (pixel centres at +0.5),
    simplified so no point is more than ``tolerance`` pixels from the traced contour."""
    contours = measure.find_contours(np.pad(mask, 1).astype(float), 0.5)
    contour = max(contours, key=len) - 1
    simple = measure.approximate_polygon(contour, tolerance=tolerance)[:-1]
    return [[round(float(x) + 0.5, 1), round(float(y) + 0.5, 1)] for y, x in simple]


def shape(label: str, points, group_id: int | None = None) -> dict:
    return {"label": label, "points": points, "group_id": group_id, "description": "", "shape_type": "polygon",
            "flags": {}, "mask": None}


def write_labelme(path: Path, image_name: str, height: int, width: int, shapes: list[dict]) -> None:
    doc = {"version": "5.5.0", "flags": {}, "shapes": shapes, "imagePath": image_name, "imageData": None,
           "imageHeight": height, "imageWidth": width}
    path.write_text(json.dumps(doc, indent=2) + "\n")


def largest(mask: np.ndarray) -> np.ndarray:
    labels, count = ndi.label(mask)
    sizes = ndi.sum(mask, labels, range(1, count + 1))
    return labels == int(np.argmax(sizes)) + 1


def inside_ellipse(model: measure.EllipseModel, shape_hw) -> np.ndarray:
    (xc, yc), (a, b), theta = model.center, model.axis_lengths, model.theta
    yy, xx = np.mgrid[:shape_hw[0], :shape_hw[1]]
    u = (xx - xc) * np.cos(theta) + (yy - yc) * np.sin(theta)
    v = -(xx - xc) * np.sin(theta) + (yy - yc) * np.cos(theta)
    return (u / a) ** 2 + (v / b) ** 2 <= 1


def fit_ellipse(points_xy: np.ndarray) -> measure.EllipseModel:
    model, _ = measure.ransac(points_xy, measure.EllipseModel, min_samples=5, residual_threshold=1.5,
                              max_trials=3000, rng=0)
    return model


def outline_xy(mask: np.ndarray) -> np.ndarray:
    return (max(measure.find_contours(np.pad(mask, 1).astype(float), 0.5), key=len) - 1)[:, ::-1]


def paint(polygon_xy, shape_hw) -> np.ndarray:
    canvas = Image.new("L", (shape_hw[1], shape_hw[0]), 0)
    ImageDraw.Draw(canvas).polygon(polygon_xy, fill=1)
    return np.array(canvas).astype(bool)


def annotate_coins(out: Path) -> None:
    image = data.coins()
    markers = np.zeros_like(image, dtype=np.int32)
    markers[image < 30], markers[image > 150] = 1, 2
    coins = ndi.binary_fill_holes(segmentation.watershed(filters.sobel(image), markers) == 2)
    labels, count = ndi.label(morphology.opening(coins, morphology.disk(2)))
    assert count == 24, count
    hulls = [morphology.convex_hull_image(labels == i) for i in range(1, count + 1)]
    for name, split, (y0, y1) in (("coins_top", "train", (0, COIN_CUT)),
                                  ("coins_bottom", "val", (COIN_CUT, image.shape[0]))):
        (out / split).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[y0:y1]).save(out / split / f"{name}.png", optimize=True)
        found = []
        for hull in hulls:
            part = hull[y0:y1]
            if part.any():
                assert part.sum() == hull.sum(), "a coin crosses the cut"
                cy, cx = np.argwhere(part).mean(0)
                found.append(((round(cy / 40), cx), shape("coin", polygon(part))))
        found.sort(key=lambda item: item[0])  # reading order: rows, then left to right
        write_labelme(out / split / f"{name}.json", f"{name}.png", y1 - y0, image.shape[1], [s for _, s in found])


def annotate_coffee(out: Path) -> None:
    image = data.coffee()
    hw = image.shape[:2]
    scribbles = Image.new("I", (hw[1], hw[0]), 0)
    draw = ImageDraw.Draw(scribbles)
    for label, lines in COFFEE_SCRIBBLES.items():
        for line in lines:
            draw.line(line, fill=label, width=3)
    seg = segmentation.random_walker(color.rgb2lab(image), np.array(scribbles).astype(np.int32), beta=30,
                                     mode="cg_j", channel_axis=-1)
    ignore = paint(COFFEE_IGNORE, hw)
    # the saucer's rim: an ellipse through the outline of everything on the table (below the cup's top)
    things = outline_xy(seg > 1)
    saucer_rim = inside_ellipse(fit_ellipse(things[things[:, 1] > 75]), hw)
    cup = ndi.binary_fill_holes(morphology.opening(seg == 3, morphology.disk(2)))
    # above its centre line the cup is its rim, an ellipse fitted to the top of the walker's outline
    # (leaving out where the walker leaked into the wood between cup and spoon)
    top = outline_xy(cup)
    top = top[(top[:, 1] < 110) & ~((top[:, 0] > 378) & (top[:, 1] < 72))]
    rim = fit_ellipse(top)
    yy = np.mgrid[:hw[0], :hw[1]][0]
    cup = largest(cup) & ~ignore & (inside_ellipse(rim, hw) | (yy > rim.center[1])) & ~paint(CUP_FOOT, hw)
    cup = largest(morphology.opening(cup, morphology.disk(1)))
    pieces, count = ndi.label(morphology.opening(seg == 4, morphology.disk(1)))
    sizes = ndi.sum(np.ones_like(pieces), pieces, range(1, count + 1))
    spoon = [ndi.binary_fill_holes(pieces == i + 1) for i in np.argsort(sizes)[::-1][:2]]
    spoon.sort(key=lambda m: np.argwhere(m)[:, 0].mean())  # the handle's top above, the bowl below
    saucer = largest(saucer_rim & ~cup & ~spoon[0] & ~spoon[1] & ~ignore)
    (out / "train").mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(out / "train" / "coffee.jpg", quality=92)
    write_labelme(out / "train" / "coffee.json", "coffee.jpg", hw[0], hw[1], [
        shape("cup", polygon(cup)), shape("saucer", polygon(saucer)),
        shape("spoon", polygon(spoon[0]), 1), shape("spoon", polygon(spoon[1]), 1),
        shape("__ignore__", [[float(x), float(y)] for x, y in COFFEE_IGNORE])])


def main(out: str) -> None:
    out_dir = Path(out)
    annotate_coins(out_dir)
    annotate_coffee(out_dir)
    print(f"wrote the LabelMe files and photos under {out_dir}/")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "data/real_photos/labelme")
