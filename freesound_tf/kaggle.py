"""Kaggle bundles: a folder to upload as a Kaggle dataset, for notebooks that run offline.

``make_bundle`` writes::

    OUT/wheels/            freesound-tf and the pure-Python dependencies a Kaggle image may lack
                           (kapre, librosa, keras, tomli-w, iterative-stratification, ...); binary
                           packages (TensorFlow, numpy, scikit-learn, ...) come from the image
    OUT/model/<N>/         the SavedModel (``freesound-tf export`` of the runs / stack)
    OUT/kaggle_infer.py    installs the wheels with ``pip --no-index`` and writes submission.csv
    OUT/inference.ipynb    the same as a one-cell notebook
    OUT/bundle.json        versions and what is inside

In the notebook (internet off): ``!python /kaggle/input/<dataset>/kaggle_infer.py``.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pandas as pd

from freesound_tf import __version__
from freesound_tf.inference import FolderTable
from freesound_tf.tagging import SavedModelScorer, score_folder, write_complete_submission

SCRIPT = Path(__file__).with_name("kaggle_script.py")
SOURCE = Path(__file__).resolve().parents[1]  # the checkout holding pyproject.toml


def make_bundle(run_dirs: list[Path], out_dir: Path, stack_dir: Path | None = None, *,
                saved_model: Path | None = None, wheels: bool = True, find_links: Path | None = None,
                extra_wheels: tuple[str, ...] = (), trim: bool = True) -> Path:
    """Write the bundle into ``out_dir`` (created; a non-empty folder is refused): the runs / stack
    exported, or an existing export (``saved_model``). ``wheels=False`` skips the wheels (no network
    needed; the notebook must then have this freesound-tf installed)."""
    from freesound_tf.export import export_run
    from freesound_tf.export.serving import latest_version

    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir}: not empty; pass a new --out folder for the bundle")
    if saved_model is not None:
        if run_dirs or stack_dir:
            raise ValueError("kaggle-bundle: pass either --saved-model or --runs/--stack")
        source = latest_version(saved_model)
        saved_model = out_dir / "model" / source.name
        shutil.copytree(source, saved_model)
    else:
        saved_model = export_run(run_dirs, out_dir / "model", stack_dir, trim=trim)
    bundled = []
    if wheels:
        bundled = build_wheels(out_dir / "wheels", find_links, extra_wheels)
    shutil.copy(SCRIPT, out_dir / "kaggle_infer.py")
    (out_dir / "inference.ipynb").write_text(json.dumps(_notebook(), indent=1))
    (out_dir / "bundle.json").write_text(json.dumps({
        "freesound_tf": __version__, "saved_model": str(saved_model.relative_to(out_dir)), "wheels": bundled,
        "built_with": {name: _installed(name) for name in ("tensorflow", "keras", "numpy", "scikit-learn")},
    }, indent=1))
    return out_dir


def bundled_requirements(pyproject: Path, extra: tuple[str, ...] = ()) -> list[str]:
    """``name==version`` (versions installed here) of the pure-Python requirements in ``pyproject``
    (core and ``train`` extra), plus the ``extra`` names. Binary wheels are platform-specific: the
    image's own TensorFlow, numpy, scikit-learn, ... are used."""
    project = tomllib.loads(pyproject.read_text())["project"]
    requirements = project["dependencies"] + project["optional-dependencies"]["train"]
    pinned = []
    for name in dict.fromkeys([_requirement_name(r) for r in requirements] + list(extra)):
        version = _installed(name)
        if version is None:
            raise RuntimeError(f"{name}: not installed here; install it (pip install 'freesound-tf[train]') "
                               "before bundling")
        if name in extra or _pure_python(name):
            pinned.append(f"{name}=={version}")
    return pinned


def build_wheels(wheel_dir: Path, find_links: Path | None = None, extra: tuple[str, ...] = ()) -> list[str]:
    """Our wheel (built from the source checkout) and the bundled requirements' wheels (pip download)."""
    if not (SOURCE / "pyproject.toml").exists():
        raise FileNotFoundError(f"{SOURCE}: no pyproject.toml; build bundles from a source checkout of freesound-tf")
    wheel_dir.mkdir(parents=True, exist_ok=True)
    links = ["--find-links", str(find_links)] if find_links else []
    _pip("wheel", "--no-deps", "--wheel-dir", str(wheel_dir), *links, str(SOURCE))
    requirements = bundled_requirements(SOURCE / "pyproject.toml", extra)
    _pip("download", "--no-deps", "--only-binary", ":all:", "--dest", str(wheel_dir), *links, *requirements)
    return sorted(p.name for p in wheel_dir.glob("*.whl"))


def write_kaggle_submission(model_dir: Path, test_dir: Path, out: Path, sample_submission: Path | None = None) -> None:
    """Score every clip of ``test_dir`` with the SavedModel and write a complete Kaggle submission.

    Rows follow ``sample_submission``'s fnames when given, else every audio file of ``test_dir``. A
    clip that cannot be decoded (or is missing) gets the model's class priors and is listed in
    ``<out>.fallback.csv``, so the file always has a row per expected fname.
    """
    scorer = SavedModelScorer(model_dir)
    result = score_folder(scorer, test_dir, scorer.sample_rate)
    if sample_submission is not None:
        fnames = pd.read_csv(sample_submission, dtype=str)["fname"].tolist()
    else:
        fnames = FolderTable.scan(test_dir).fnames
    fallback = write_complete_submission(out, fnames, result, scorer, test_dir)
    print(f"{len(fnames) - len(fallback)} clips scored with {scorer.path} -> {out}"
          + (f"; {len(fallback)} scored with the class priors (see the warning)" if fallback else ""))


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args, "--quiet", "--disable-pip-version-check"], check=True)


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _requirement_name(requirement: str) -> str:
    return re.match(r"[A-Za-z0-9._-]+", requirement).group(0)


def _pure_python(name: str) -> bool:
    """Whether the installed distribution came from a ``py3-none-any`` style wheel (its WHEEL tags)."""
    wheel = metadata.distribution(name).read_text("WHEEL") or ""
    tags = [line.split(":", 1)[1].strip() for line in wheel.splitlines() if line.startswith("Tag:")]
    return bool(tags) and all(tag.endswith("-none-any") for tag in tags)


def _notebook() -> dict:
    cell = ("# Add this bundle as a dataset (internet off), then:\n"
            "!python /kaggle/input/YOUR_DATASET/kaggle_infer.py --out submission.csv")
    return {"cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                       "source": cell.splitlines(keepends=True)}],
            "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
            "nbformat": 4, "nbformat_minor": 5}
