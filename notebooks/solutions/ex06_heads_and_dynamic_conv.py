"""Solution to the exercise of notebook 06."""

import numpy as np


def dynamic_conv_one_image(feature, kernels):
    """A 1x1 convolution with K kernels: at every pixel, a dot product over the E channels."""
    return np.einsum("hwe,ke->khw", np.asarray(feature), np.asarray(kernels))
