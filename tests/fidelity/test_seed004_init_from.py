"""Seed 004's max3exam has no pretraining of its own: its fold models start from v1mix's best
pretrain checkpoint (train.init_from + init_from_stage = "pretrain"), and run.sh trains v1mix first."""
from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pytest

from freesound_tf.config import AudioConfig, ConfigError, FrontendConfig, ModelConfig, PipelineConfig
from freesound_tf.training.member import MemberTrainer
from tests.fidelity.seed004 import ROOT, recipe

TINY = {"audio": AudioConfig(sample_rate=8000), "pipeline": PipelineConfig(crop_seconds=1.0),
        "frontend": FrontendConfig(n_fft=256, hop_length=128, n_mels=32)}
DATA = SimpleNamespace(layout=SimpleNamespace(classes=SimpleNamespace(names=["a", "b", "c"]), multilabel=True))


def _tiny(member: str):
    full = recipe(member)
    model = ModelConfig(variant=full.model.variant, stem_width=4, block_widths=(4, 8, 8), gru_units=4)
    return replace(full, model=model, **TINY)


def test_max3exam_starts_from_v1mix_pretraining_and_run_sh_trains_v1mix_first() -> None:
    train = recipe("max3exam").train
    assert (train.init_from, train.init_from_stage, train.pretrain.epochs) == ("v1mix", "pretrain", 0)
    assert recipe("v1mix").name == "v1mix" and recipe("v1mix").train.pretrain.epochs == 35
    default = re.search(r'^RECIPES="\$\{RECIPES:-([^}]*)\}"', (ROOT / "run.sh").read_text(), re.M).group(1).split()
    assert default.index("models/v1mix.toml") < default.index("models/max3exam.toml")


def test_every_fold_model_starts_from_the_pretrain_checkpoint_of_the_run_beside_it(tmp_path: Path) -> None:
    runs = tmp_path / "elsewhere"  # run.sh's RUNS need not be runs/
    keras.utils.set_random_seed(1)
    source_trainer = MemberTrainer(_tiny("v1mix"), DATA, runs / "v1mix")
    source = source_trainer.make_model()
    (runs / "v1mix" / "pretrain").mkdir(parents=True)
    source.save(runs / "v1mix" / "pretrain" / "best.keras")
    keras.utils.set_random_seed(2)
    trainer = MemberTrainer(_tiny("max3exam"), DATA, runs / "max3exam")
    model = trainer.initialise(trainer.make_model(), "fold3")
    assert model.get_layer("block1_pool_max_mel") is not None  # max3exam's own pooling
    for layer in source.layers:
        for a, b in zip(layer.get_weights(), model.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(a, b)


def test_a_missing_source_run_fails_before_training_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"recipe 'max3exam': train.init_from run folder .*elsewhere/v1mix "
                                          r"does not exist yet"):
        MemberTrainer(_tiny("max3exam"), DATA, tmp_path / "elsewhere" / "max3exam")
    (tmp_path / "elsewhere" / "v1mix").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"v1mix/pretrain/best.keras not found"):
        MemberTrainer(_tiny("max3exam"), DATA, tmp_path / "elsewhere" / "max3exam")
