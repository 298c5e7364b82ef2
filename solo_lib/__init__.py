"""solo_lib: the tested code behind the solo-course notebooks.

Dynamic SOLO (SOLOv2) instance segmentation, built from scratch in TensorFlow 2 / Keras 3.
Each module mirrors one notebook; see README.md for the map.
"""

__version__ = "0.1.0"
