"""Writing a file so that a crash or a full disk leaves the old file or the new one, never half of one.

The text goes to a temporary file in the same folder, which then replaces the target with
``os.replace``: a rename, atomic on POSIX and Windows when both names are on one file system.
Checkpoints (``solo_lib.checkpoints.save_atomically``) and exports (``solo_lib.export``) follow the
same rule for what Keras and the converters write.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_text_atomically(path: str | os.PathLike, text: str) -> Path:
    """Writes ``text`` (UTF-8) to ``path``, creating its folder; returns the path.

    On any failure the temporary file is removed and an existing ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
