"""``.keras`` checkpoints that a kill never leaves half-written, and a check that one is readable."""
from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import keras

from freesound_tf.locking import atomic_path


def save_model_atomic(model: keras.Model, path: str | Path) -> None:
    """``model.save(path)`` through a temporary file: ``path`` holds the old or the new model, never a part."""
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)


def copy_atomic(src: str | Path, dst: str | Path) -> None:
    """Copy ``src`` to ``dst`` through a temporary file."""
    with atomic_path(dst, suffix=Path(dst).suffix) as tmp:
        shutil.copyfile(src, tmp)


def checkpoint_problem(path: str | Path) -> str | None:
    """Why the ``.keras`` file at ``path`` cannot be loaded (missing, not a zip, a damaged member), or None.

    Reads the whole archive and checks every member's CRC, so a truncated or overwritten file is
    caught before Keras fails on it halfway through a resume.
    """
    path = Path(path)
    if not path.is_file():
        return "missing"
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        return f"not a readable .keras file ({type(err).__name__}: {err})"
    if damaged is not None:
        return f"damaged member {damaged}"
    return None
