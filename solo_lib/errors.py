"""The project's exception and warning types.

Every error raised on bad user input is a :class:`SoloError`; its message names the file, the
record (image id, annotation id, shape index) and what to do about it.
"""


class SoloError(Exception):
    """Base class of every error solo_lib raises on bad input."""


class DatasetError(SoloError, ValueError):
    """A dataset file (COCO JSON, LabelMe JSON, image, labels file) cannot be used as it is."""


class DatasetWarning(UserWarning):
    """Something in a dataset was skipped or repaired; the message says what and where."""
