"""Data and recipes for the reliability tests (8 kHz demo clips, the tiny cnn9 of tests/conftest.py)."""
from pathlib import Path

import pytest
import tomli_w

from freesound_tf.config import to_dict
from tests.conftest import tiny_recipe


def write_recipe(path: Path, name: str = "tiny") -> Path:
    """The tiny 2-fold, 1-epoch recipe as a TOML file for the command line."""
    path.write_text(tomli_w.dumps(to_dict(tiny_recipe(name))))
    return path


@pytest.fixture(scope="session")
def medium_demo(tmp_path_factory) -> Path:
    """120 curated clips: enough decoding for two processes to overlap."""
    from freesound_tf.data.demo import make_demo_dataset

    return make_demo_dataset(tmp_path_factory.mktemp("medium") / "demo", seed=4, sample_rate=8000,
                             n_curated=120, n_noisy=4, n_test=4)
