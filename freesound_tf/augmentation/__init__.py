"""Training-time augmentation: batch mixup on raw waveforms and seed 000's per-clip audio effects."""
from freesound_tf.augmentation.effects import EffectChain, EffectDraw
from freesound_tf.augmentation.mixup import mixup_batch

__all__ = ["EffectChain", "EffectDraw", "mixup_batch"]
