"""The recipes shipped with the library: member recipes (``models/*.toml``) and stacker recipes
(``stacking/*.toml``), usable by name from any folder (``--recipe se``, ``load_recipe("se")``).

In a source checkout they are read from the repository's ``models/`` and ``stacking/`` folders;
a wheel installs the same files as package data under ``freesound_tf/recipes/`` (see setup.py).
"""
from __future__ import annotations

from pathlib import Path

from freesound_tf.config import ConfigError

FOLDERS = {"member": "models", "stacker": "stacking"}


def recipe_folder(kind: str) -> Path:
    """Folder holding the packaged recipes of ``kind`` ("member" or "stacker")."""
    folder = FOLDERS[kind]
    installed = Path(__file__).parent / folder  # wheel: package data
    return installed if installed.is_dir() else Path(__file__).resolve().parents[2] / folder


def packaged_recipes(kind: str = "member") -> dict[str, Path]:
    """Name -> file of every packaged recipe of ``kind``, sorted by name."""
    return {p.stem: p for p in sorted(recipe_folder(kind).glob("*.toml"))}


def resolve_recipe(name_or_path: str | Path, kind: str = "member") -> Path:
    """An existing file as is, else the packaged recipe of that name (``se`` or ``se.toml``).

    Anything else fails with one line listing the packaged names.
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    known = packaged_recipes(kind)
    if path.parent == Path(".") and path.suffix in ("", ".toml") and path.stem in known:
        return known[path.stem]
    raise ConfigError(f"{name_or_path}: {kind} recipe not found; pass a TOML file or a packaged name "
                      f"({', '.join(known)})")
