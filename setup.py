"""Packages of the wheel: the library, plus models/*.toml and stacking/*.toml as package data.

The recipes stay at the repository root (the project layout); in a wheel they are installed as
``freesound_tf/recipes/models`` and ``freesound_tf/recipes/stacking`` so ``--recipe se`` works
from any folder (see ``freesound_tf.recipes``).
"""
from setuptools import find_packages, setup

RECIPE_PACKAGES = {"freesound_tf.recipes.models": "models", "freesound_tf.recipes.stacking": "stacking"}

setup(
    packages=find_packages(include=["freesound_tf", "freesound_tf.*"]) + list(RECIPE_PACKAGES),
    package_dir=RECIPE_PACKAGES,
    package_data={name: ["*.toml"] for name in RECIPE_PACKAGES},
)
