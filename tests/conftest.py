"""Shared fixtures: tiny trained member runs for stacking and export tests (trained once per session)."""
from pathlib import Path

import pytest

from freesound_tf.config import (
    AudioConfig, FoldsConfig, FrontendConfig, ModelConfig, PipelineConfig, Recipe, StageConfig, TrainConfig,
)

TINY_SR = 8000


def tiny_recipe(name: str, variant: str = "se", use_global_features: bool = False) -> Recipe:
    """A cnn9 small enough to train in seconds on 8 kHz, 1 s crops, 2 folds, one epoch."""
    return Recipe(
        name=name,
        audio=AudioConfig(sample_rate=TINY_SR),
        pipeline=PipelineConfig(crop_seconds=1.0, batch_size=8),
        folds=FoldsConfig(n_splits=2, seed=0),
        frontend=FrontendConfig(n_fft=256, hop_length=128, n_mels=32),
        model=ModelConfig(variant=variant, stem_width=4, block_widths=(4, 8, 8), gru_units=4,
                          use_global_features=use_global_features),
        train=TrainConfig(finetune=StageConfig(epochs=1)),
    )


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory) -> list[Path]:
    """Two finished member runs on a tiny demo set: ``v1mix`` without and ``se`` with the
    global-feature branch. Each has oof/test predictions, fold models and the run metadata."""
    from freesound_tf.data.demo import make_demo_dataset
    from freesound_tf.data.prepare import prepare_data
    from freesound_tf.training.member import train_member

    root = tmp_path_factory.mktemp("tiny_runs")
    demo = make_demo_dataset(root / "demo", seed=11, sample_rate=TINY_SR, n_curated=40, n_noisy=8, n_test=10)
    runs = []
    for recipe in (tiny_recipe("tiny_v1mix", "v1mix"), tiny_recipe("tiny_se", "se", use_global_features=True)):
        data = prepare_data(demo, recipe.audio, root / "work", splits=["curated", "test"], workers=1, progress=False)
        runs.append(train_member(recipe, data, root / "runs" / recipe.name, verbose=0).run_dir)
    return runs


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Long tests (marked ``runs_first``) go first, so parallel workers (``-n``) finish together."""
    items.sort(key=lambda item: item.get_closest_marker("runs_first") is None)
