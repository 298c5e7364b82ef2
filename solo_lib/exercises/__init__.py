"""Checkers for the exercises at the end of each notebook.

In a notebook::

    def rle_encode(mask):
        raise NotImplementedError  # your code here

    check("01a", rle_encode)

prints ``✓`` when the answer is right, ``✗`` and the first failing case when it is wrong, and a
hint when it has not been attempted. ``check`` never raises, so a notebook runs top to bottom
either way; solutions are in ``notebooks/solutions/``. ``tests/test_exercises.py`` runs every
checker against the solution and against a wrong answer. The checkers live in
:mod:`solo_lib.exercises.foundations` (the first exercises of notebooks 00-07),
:mod:`~solo_lib.exercises.targets_losses` (04c, 07c), :mod:`~solo_lib.exercises.network` (05b, 06b),
:mod:`~solo_lib.exercises.training` (08-09, and 10a-11b), :mod:`~solo_lib.exercises.annotation` (08b-a),
:mod:`~solo_lib.exercises.inference` (10c), :mod:`~solo_lib.exercises.evaluation` (11c) and
:mod:`~solo_lib.exercises.deploy` (12a).
"""

from __future__ import annotations

from solo_lib.exercises import annotation, deploy, evaluation, foundations, inference, network, targets_losses, training
from solo_lib.exercises.common import Wrong

__all__ = ["CHECKERS", "SOLUTIONS", "Wrong", "check"]

SOLUTIONS = "notebooks/solutions/"

CHECKERS = {
    "00": foundations.check_00_count_instances,
    "01a": foundations.check_01a_rle_encode,
    "01b": foundations.check_01b_polygon_area,
    "02a": foundations.check_02a_rectangle_to_polygon,
    "02b": foundations.check_02b_count_instances,
    "03a": foundations.check_03a_vertical_flip,
    "04a": foundations.check_04a_cell_of,
    "04b": foundations.check_04b_levels_of,
    "04c": targets_losses.check_04c_centre_cells,
    "05a": foundations.check_05a_feature_sizes,
    "05b": network.check_05b_top_down,
    "06a": foundations.check_06a_dynamic_conv,
    "06b": network.check_06b_kernel_branch,
    "07a": foundations.check_07a_dice,
    "07b": foundations.check_07b_focal,
    "07c": targets_losses.check_07c_mask_loss,
    "08a": training.check_08a_train_step,
    "08b-a": annotation.check_08b_a_mask_to_polygon,
    "09a": training.check_09a_resume_epoch,
    "09b": training.check_09b_learning_rate,
    "10a": training.check_10a_point_nms,
    "10b": training.check_10b_matrix_nms_decay,
    "10c": inference.check_10c_matrix_nms,
    "11a": training.check_11a_mask_iou,
    "11b": training.check_11b_coco_ap,
    "11c": evaluation.check_11c_match,
    "12a": deploy.check_12a_instance_list,
}


def check(exercise: str, answer) -> None:
    """Runs the checker of ``exercise`` on ``answer`` and prints the verdict (✓, ✗ or …); never raises."""
    checker = CHECKERS[exercise]
    name = getattr(answer, "__name__", "answer")
    try:
        detail = checker(answer)
    except NotImplementedError:
        print(f"… {exercise} {name}: not attempted yet. Replace `raise NotImplementedError` with your code "
              f"(a solution is in {SOLUTIONS}).")
        return
    except Wrong as err:
        print(f"✗ {exercise} {name}: {err}")
        return
    except Exception as err:  # the learner's code crashed: show it, keep the notebook running
        print(f"✗ {exercise} {name} raised {type(err).__name__}: {err}")
        return
    print(f"✓ {exercise} {name}: correct ({detail})")
