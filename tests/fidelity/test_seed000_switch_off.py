"""Seed 000: the switch-off epoch (0-based, switch_off_augmentations_on) stops every augmentation,
mixup included."""
from __future__ import annotations

import pytest

from freesound_tf.config import load_recipe
from freesound_tf.training.callbacks import effects_active, mixup_active
from tests.fidelity.seed004 import ROOT


@pytest.mark.parametrize("member", ["ds_cnn2d", "ds_rnn2d", "ds_cnn1d"])
def test_effects_and_mixup_run_in_epochs_0_to_89_only(member: str) -> None:
    stage = load_recipe(ROOT / "models" / f"{member}.toml").train.finetune
    assert stage.mixup_prob > 0 and stage.epochs == 100
    assert [effects_active(stage, e) for e in (0, 89, 90, 99)] == [True, True, False, False]
    assert [mixup_active(stage, e) for e in (0, 89, 90, 99)] == [True, True, False, False]
