"""Solution to the exercise of notebook 12."""

import numpy as np


def instance_list(result, class_names, min_score):
    """``[(name, score, area), ...]`` of the instances with ``score >= min_score``, in the result's
    order (an export returns them highest score first)."""
    found = []
    for mask, label, score in zip(result["masks"], result["labels"], result["scores"]):
        if score >= min_score:
            found.append((class_names[int(label)], float(score), int(np.count_nonzero(mask))))
    return found
