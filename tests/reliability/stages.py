"""One tiny fine-tuning stage on 8 kHz demo clips, callable from a test or from a child process."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from freesound_tf.config import StageConfig
from freesound_tf.data.demo import make_demo_dataset
from freesound_tf.data.pipeline import TrainInput
from freesound_tf.data.prepare import prepare_data
from freesound_tf.training.member import MemberTrainer
from freesound_tf.training.stage import fit_stage
from tests.conftest import tiny_recipe


def fit_tiny_stage(root: Path, epochs: int) -> Path:
    """Train (or resume) ``root/run/stage`` for ``epochs`` epochs on 16 clips; the best checkpoint's path."""
    demo = make_demo_dataset(root / "demo", seed=7, sample_rate=8000, n_curated=16, n_noisy=4, n_test=4)
    recipe = tiny_recipe("stage")
    data = prepare_data(demo, recipe.audio, root / "work", splits=["curated"], workers=1, progress=False)
    trainer = MemberTrainer(recipe, data, root / "run", verbose=0)
    split = data.splits["curated"]
    with split.open() as cache:
        labels, rows = split.labels(cache), np.arange(len(cache))
        train_input = TrainInput(cache, labels, recipe.pipeline, recipe.audio.sample_rate, rows, inputs=trainer.inputs)
        return fit_stage(trainer.make_model, trainer.compile_model, StageConfig(epochs=epochs), root / "run" / "stage",
                         train_input, lambda m: trainer.predict(m, cache, rows), labels, root / "run" / "tensorboard",
                         verbose=0)
