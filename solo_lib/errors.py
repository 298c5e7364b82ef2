"""The project's exception and warning types.

Every error raised on bad user input is a :class:`SoloError`; its message names the file, the
record (image id, annotation id, shape index) and what to do about it.
"""

EXAMPLES = 3  # how many offending ids or entries an error or warning lists before "..."


class SoloError(Exception):
    """Base class of every error solo_lib raises on bad input."""


class DatasetError(SoloError, ValueError):
    """A dataset file (COCO JSON, LabelMe JSON, image, labels file) cannot be used as it is."""


class DatasetWarning(UserWarning):
    """Something in a dataset was skipped or repaired; the message says what and where."""


class ConfigError(SoloError, ValueError):
    """A configuration value (``SOLOConfig``, ``TrainConfig``, a command-line option) is invalid."""


class CheckpointError(SoloError, ValueError):
    """A checkpoint or output folder cannot be used as it is (damaged, another run's, other classes)."""


class MissingFileError(SoloError, FileNotFoundError):
    """A file the user named (checkpoint, weights, image) does not exist."""


class TrainingError(SoloError, RuntimeError):
    """Training cannot go on (a non-finite loss); the message says where and what to try."""
