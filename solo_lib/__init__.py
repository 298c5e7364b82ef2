"""solo_lib: the tested code behind the solo-course notebooks.

Dynamic SOLO (SOLOv2) instance segmentation, built from scratch in TensorFlow 2 / Keras 3.
Each module mirrors one notebook; see README.md for the map.
"""

import os

# TensorFlow enables its oneDNN CPU kernels by default only on CPUs with AVX-512 deep-learning
# features (VNNI, BF16, AMX). On an AVX2-only CPU, most learners' laptops, its plain kernels compute
# convolution gradients 2-3x slower, so the course asks for oneDNN everywhere. It takes effect only
# if solo_lib is imported before TensorFlow; set TF_ENABLE_ONEDNN_OPTS=0 to keep the plain kernels.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"
