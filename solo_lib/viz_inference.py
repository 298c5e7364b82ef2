"""Notebook 10's Matrix NMS explorer: the same network outputs post-processed with other NMS settings.

The network runs once; each change of a slider only re-runs :func:`solo_lib.inference.postprocess`,
and the callback :func:`nms_view` is a pure function that returns the figure and the result, so
tests call it directly.
"""

from __future__ import annotations

import matplotlib.pyplot as plt

from solo_lib.viz import draw_predictions


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
