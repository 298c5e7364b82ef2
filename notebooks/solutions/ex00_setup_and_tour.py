"""Solution to the exercise of notebook 00."""

import json


def count_instances(annotation_file, class_name):
    """Non-crowd instances of `class_name` in a COCO file, counted from the raw JSON."""
    data = json.loads(open(annotation_file, encoding="utf-8").read())
    (cat_id,) = [c["id"] for c in data["categories"] if c["name"] == class_name]
    return sum(1 for a in data["annotations"] if a["category_id"] == cat_id and not a.get("iscrowd", 0))
