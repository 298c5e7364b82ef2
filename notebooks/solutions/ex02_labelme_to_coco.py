"""Solutions to the exercises of notebook 02."""


def rectangle_to_polygon(points):
    """LabelMe's rectangle (two opposite corners, in any order) as a flat 4-corner polygon."""
    (x1, y1), (x2, y2) = points
    x1, x2 = sorted((x1, x2))
    y1, y2 = sorted((y1, y2))
    return [x1, y1, x2, y1, x2, y2, x1, y2]


def count_instances(shapes):
    """Shapes with the same (label, group_id) are one instance; group_id None is always new."""
    keys = set()
    for index, shape in enumerate(shapes):
        if shape["label"] == "__ignore__":
            continue
        group = shape.get("group_id")
        keys.add((shape["label"], group) if group is not None else (shape["label"], "alone", index))
    return len(keys)
