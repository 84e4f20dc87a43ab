"""Dependencies: requirements.txt is a complete lock inside pyproject.toml's ranges; recipes ship in the wheel."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]


def _lock() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            assert canonicalize_name(name) not in pins, f"{name} pinned twice"
            pins[canonicalize_name(name)] = version.strip()
    return pins


def test_lock_pins_every_declared_requirement_inside_its_range() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    lock = _lock()
    for text in project["dependencies"] + extras["train"] + extras["test"]:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in lock, f"{requirement.name}: declared in pyproject.toml, missing from requirements.txt"
        assert requirement.specifier.contains(lock[name]), f"{name}=={lock[name]} outside {requirement.specifier}"
    for transitive in ("protobuf", "grpcio", "numba", "llvmlite", "ml-dtypes"):
        assert transitive in lock, f"{transitive}: the lock must pin transitive packages too"


def test_dependencies_are_ranges_not_pins() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for text in project["dependencies"]:
        assert "==" not in text and re.search(r">=", text), f"{text}: give a range (Kaggle/Colab images pin their own)"


def test_setup_py_ships_both_recipe_folders() -> None:
    setup = (REPO / "setup.py").read_text()
    assert '"freesound_tf.recipes.models": "models"' in setup
    assert '"freesound_tf.recipes.stacking": "stacking"' in setup
    assert any((REPO / "models").glob("*.toml")) and any((REPO / "stacking").glob("*.toml"))
