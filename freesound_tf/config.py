"""Typed recipe configuration loaded from TOML.

A recipe is a tree of frozen dataclasses. Loading checks every key and type and
names the offending key (``model.w_ratio``) so a typo fails before any heavy work.
"""
from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar


class ConfigError(ValueError):
    """A recipe key is unknown, missing or of the wrong type/value."""


@dataclass(frozen=True)
class AudioConfig:
    """How clips are decoded into the waveform cache."""

    sample_rate: int = 44100
    trim_top_db: float = 60.0  # librosa.effects.trim threshold; <= 0 disables trimming
    global_steps: int = 128  # rows of the global waveform statistics (128 x 12)
    length_norm_seconds: float = 10.0  # length feature = trimmed samples / (this * sample_rate)

    def __post_init__(self) -> None:
        _check(self.sample_rate >= 1000, "audio.sample_rate", "must be >= 1000 Hz")
        _check(self.global_steps >= 1, "audio.global_steps", "must be >= 1")
        _check(self.length_norm_seconds > 0, "audio.length_norm_seconds", "must be > 0")


@dataclass(frozen=True)
class PipelineConfig:
    """tf.data input pipeline: crops, batching, how to mix (how often is set per training stage)."""

    crop_seconds: float = 5.0
    batch_size: int = 32
    eval_crops: int = 3  # deterministic crops at start / middle / end for validation and TTA
    # The weight of the example itself: "fixed": mixup_lambda; "beta": ~ Beta(alpha, alpha);
    # "uniform": ~ U(mixup_uniform_range) (seed 001: [0, 0.5], seed 000: [0.4, 0.6]).
    mixup_mode: str = "fixed"
    mixup_lambda: float = 0.7
    mixup_alpha: float = 0.4
    mixup_uniform_range: tuple[float, ...] = (0.0, 1.0)
    mixup_label_rule: str = "blend"  # "blend": lambda-weighted labels; "or": element-wise max
    # "example": each example is mixed (with probability p) with a random partner of the batch;
    # "batch" (seed 004): with probability p the whole batch is mixed with a shuffled copy of itself.
    mixup_scope: str = "example"
    # "blend": global features and length are mixed like the audio; "keep" (seed 004): each example
    # keeps its own.
    mixup_side_inputs: str = "blend"
    # Seed 002's variable-length training: (low, high) percentiles of the training clips' lengths;
    # each batch is cropped to a random length between them. Empty: every batch is crop_seconds long.
    random_length_percentiles: tuple[float, ...] = ()
    random_length_seconds: tuple[float, ...] = ()  # the same with [low, high] in seconds (seed 002's code)
    # "window": every clip is cut (or zero-padded) to the batch's length (crop_seconds or a random length).
    # "whole" (seed 000): clips are used whole, a random crop_seconds window of longer ones; each batch is
    # zero-padded at the end to its longest clip.
    crop_mode: str = "window"
    seed: int = 42
    # Who builds training batches: "graph" (TensorFlow ops only: fast, TPU-ready), "python" (numpy, needed by
    # per-clip Python augmentation such as audio effects) or "auto" (graph unless such augmentation is on).
    loader: str = "auto"
    effects_workers: int = 0  # threads running audio effects in the python loader; 0: one per core
    # The graph loader holds a cache's int16 samples in memory up to this share of the machine's memory;
    # a larger cache is streamed from TFRecord shards written next to it.
    graph_memory_fraction: float = 0.25

    def __post_init__(self) -> None:
        _check(self.crop_seconds > 0, "pipeline.crop_seconds", "must be > 0")
        _check(self.batch_size >= 1, "pipeline.batch_size", "must be >= 1")
        _check(self.eval_crops >= 1, "pipeline.eval_crops", "must be >= 1")
        _check(self.mixup_mode in ("fixed", "beta", "uniform"), "pipeline.mixup_mode",
               "must be 'fixed', 'beta' or 'uniform'")
        r = self.mixup_uniform_range
        _check(len(r) == 2 and 0.0 <= r[0] <= r[1] <= 1.0, "pipeline.mixup_uniform_range",
               "must be [low, high] with 0 <= low <= high <= 1")
        _check(0.0 < self.mixup_lambda <= 1.0, "pipeline.mixup_lambda", "must be in (0, 1]")
        _check(self.mixup_alpha > 0, "pipeline.mixup_alpha", "must be > 0")
        _check(self.mixup_label_rule in ("blend", "or"), "pipeline.mixup_label_rule",
               "must be 'blend' or 'or'")
        _check(self.mixup_scope in ("example", "batch"), "pipeline.mixup_scope", "must be 'example' or 'batch'")
        _check(self.mixup_side_inputs in ("blend", "keep"), "pipeline.mixup_side_inputs",
               "must be 'blend' or 'keep'")
        p = self.random_length_percentiles
        _check(p == () or (len(p) == 2 and 0 <= p[0] <= p[1] <= 100), "pipeline.random_length_percentiles",
               "must be empty or [low, high] with 0 <= low <= high <= 100")
        r = self.random_length_seconds
        _check(r == () or (len(r) == 2 and 0 < r[0] <= r[1]), "pipeline.random_length_seconds",
               "must be empty or [low, high] with 0 < low <= high")
        _check(not (p and r), "pipeline.random_length_seconds",
               "set random_length_percentiles or random_length_seconds, not both")
        _check(self.crop_mode in ("window", "whole"), "pipeline.crop_mode", "must be 'window' or 'whole'")
        _check(self.crop_mode == "window" or not (p or r), "pipeline.crop_mode",
               "'whole' takes each clip's own length; drop random_length_percentiles / random_length_seconds")
        _check(self.loader in ("auto", "graph", "python"), "pipeline.loader", "must be 'auto', 'graph' or 'python'")
        _check(self.effects_workers >= 0, "pipeline.effects_workers", "must be >= 0 (0: one per core)")
        _check(0.0 <= self.graph_memory_fraction <= 1.0, "pipeline.graph_memory_fraction", "must be in [0, 1]")


@dataclass(frozen=True)
class AugmentConfig:
    """Waveform audio effects (seed 000), applied per training clip in the input pipeline."""

    p_effects: float = 0.0  # probability that a clip gets the effect chain; 0 disables effects
    # Inside the chain each effect has its own probability; parameters are drawn uniformly from
    # [low, high] (tempo log-uniformly). See freesound_tf/augmentation/effects.py.
    p_pitch: float = 0.5
    pitch_semitones: tuple[float, ...] = (-3.0, 3.0)  # shift, duration kept
    p_tempo: float = 0.5
    tempo_range: tuple[float, ...] = (0.8, 1.25)  # speed factor (> 1 faster), pitch kept
    p_reverb: float = 0.5
    reverb_room_size: tuple[float, ...] = (0.1, 0.8)  # Freeverb room size in [0, 1]
    reverb_wet_level: tuple[float, ...] = (0.1, 0.5)  # reverberated share of the mix in [0, 1]
    p_overdrive: float = 0.5
    overdrive_gain_db: tuple[float, ...] = (5.0, 15.0)  # drive before tanh clipping, on the peak-normalized clip
    # Seed 000: with this probability a clip is cut into equal chunks of about shuffle_chunk_seconds that
    # are put back in random order. Switched off together with the effects (effects_until_epoch).
    p_shuffle_chunks: float = 0.0
    shuffle_chunk_seconds: float = 0.5
    # Seed 003 (resnet50): a clip shorter than the training crop is followed by a copy of itself with one
    # time mask (up to this fraction of the copy zeroed) and one frequency band removed (up to this
    # fraction of the mel scale up to Nyquist), then cropped / padded as usual.
    short_clip_masked_copy: bool = False
    masked_copy_time_fraction: float = 0.2
    masked_copy_freq_fraction: float = 0.15

    def __post_init__(self) -> None:
        for name in ("p_effects", "p_pitch", "p_tempo", "p_reverb", "p_overdrive", "p_shuffle_chunks"):
            _check(0.0 <= getattr(self, name) <= 1.0, f"augment.{name}", "must be in [0, 1]")
        bounds = {"pitch_semitones": (-24.0, 24.0), "tempo_range": (0.25, 4.0), "reverb_room_size": (0.0, 1.0),
                  "reverb_wet_level": (0.0, 1.0), "overdrive_gain_db": (0.0, 60.0)}
        for name, (lo, hi) in bounds.items():
            r = getattr(self, name)
            _check(len(r) == 2 and lo <= r[0] <= r[1] <= hi, f"augment.{name}",
                   f"must be [low, high] with {lo:g} <= low <= high <= {hi:g}")
        _check(self.shuffle_chunk_seconds > 0, "augment.shuffle_chunk_seconds", "must be > 0")
        for name in ("masked_copy_time_fraction", "masked_copy_freq_fraction"):
            _check(0.0 <= getattr(self, name) <= 1.0, f"augment.{name}", "must be in [0, 1]")


@dataclass(frozen=True)
class FoldsConfig:
    n_splits: int = 10
    seed: int = 42

    def __post_init__(self) -> None:
        _check(self.n_splits >= 2, "folds.n_splits", "must be >= 2")


@dataclass(frozen=True)
class FrontendConfig:
    """In-graph log-mel frontend (kapre STFT -> magnitude -> mel -> dB)."""

    n_fft: int = 1024
    hop_length: int = 512
    n_mels: int = 64
    f_min: float = 0.0
    f_max: float | None = None  # None: sample_rate / 2
    power: float = 2.0
    top_db: float = 80.0  # dB floor below each clip's maximum
    trainable_filterbank: bool = False
    frequency_encoding: bool = False  # extra channel, linear -1..1 over the mel axis
    deltas: bool = False  # extra delta and delta-delta channels
    time_masks: int = 0  # SpecAugment-style masks, active in training only
    time_mask_width: int = 20
    freq_masks: int = 0
    freq_mask_width: int = 8
    random_erasing: float = 0.0  # seed 002: probability per clip of erasing one rectangle (training only)
    random_erasing_max_area: float = 0.25  # largest erased fraction of the time x mel plane
    # Seed 002 (Keras ImageDataGenerator, training only): shift along time by up to this fraction of the
    # frames either way, edge frames repeated; reverse time with probability time_flip.
    time_shift: float = 0.0
    time_flip: float = 0.0
    # Training only: a random smooth gain curve over the mel bins, within +-eq_db, per clip (robustness
    # to the microphone / room of new recordings; 0 = off).
    eq_db: float = 0.0

    def __post_init__(self) -> None:
        _check(self.n_fft >= 16, "frontend.n_fft", "must be >= 16")
        _check(0 < self.hop_length <= self.n_fft, "frontend.hop_length", "must be in (0, n_fft]")
        _check(self.n_mels >= 2, "frontend.n_mels", "must be >= 2")
        _check(self.power in (1.0, 2.0), "frontend.power", "must be 1.0 or 2.0")
        _check(self.top_db > 0, "frontend.top_db", "must be > 0")
        _check(self.f_min >= 0, "frontend.f_min", "must be >= 0")
        _check(self.f_max is None or self.f_max > self.f_min, "frontend.f_max", "must be > f_min (or unset)")
        _check(self.time_masks >= 0 and self.freq_masks >= 0, "frontend.time_masks",
               "time_masks and freq_masks must be >= 0")
        _check(self.time_mask_width >= 1 and self.freq_mask_width >= 1, "frontend.time_mask_width",
               "time_mask_width and freq_mask_width must be >= 1")
        _check(0.0 <= self.random_erasing <= 1.0, "frontend.random_erasing", "must be in [0, 1]")
        _check(0.0 < self.random_erasing_max_area <= 1.0, "frontend.random_erasing_max_area", "must be in (0, 1]")
        _check(0.0 <= self.time_shift <= 1.0, "frontend.time_shift", "must be in [0, 1]")
        _check(0.0 <= self.time_flip <= 1.0, "frontend.time_flip", "must be in [0, 1]")
        _check(0.0 <= self.eq_db <= self.top_db, "frontend.eq_db", "must be in [0, top_db]")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture: a registry key plus its options."""

    name: str = "cnn9"
    variant: str = "se"  # cnn9: v1mix | max3exam | se | msc_se
    pooling: str | None = None  # avemax1 | avemax2 | avemax3 | max; None: the variant's own
    w_ratio: float = 1.0
    stem_width: int = 64
    block_widths: tuple[int, ...] = (96, 128, 256, 512)
    bn_momentum: float = 0.85
    global_bn_momentum: float = 0.99  # BN at the input of the global-feature GRU branch (seed 004: Keras' default)
    highway: bool = False  # gated highway connection inside each block
    conv_cat: bool = False  # seed 004's conv_cat: concat(first conv after its 3x3 pool, second conv) -> 1x1 conv
    use_global_features: bool = True
    use_length: bool = True
    gru_units: int = 128
    dropout: float = 0.0
    # Options of architectures other than cnn9 (whose options are the fields above), checked by the
    # architecture's own dataclass: see ``freesound_tf.models.registry.model_options``.
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check(self.w_ratio > 0, "model.w_ratio", "must be > 0")
        _check(len(self.block_widths) >= 1, "model.block_widths", "needs at least one block")
        _check(all(w >= 1 for w in self.block_widths), "model.block_widths", "widths must be >= 1")
        _check(self.stem_width >= 2, "model.stem_width", "must be >= 2")
        _check(self.pooling in (None, "avemax1", "avemax2", "avemax3", "max"), "model.pooling",
               "must be 'avemax1', 'avemax2', 'avemax3' or 'max' (or unset)")
        _check(self.gru_units >= 1, "model.gru_units", "must be >= 1")
        _check(0.0 < self.bn_momentum < 1.0, "model.bn_momentum", "must be in (0, 1)")
        _check(0.0 < self.global_bn_momentum < 1.0, "model.global_bn_momentum", "must be in (0, 1)")
        _check(0.0 <= self.dropout < 1.0, "model.dropout", "must be in [0, 1)")


@dataclass(frozen=True)
class StageConfig:
    """One training stage (noisy pretraining or curated fine-tuning per fold).

    Every epoch field is a 0-based epoch index, as Keras and the seeds' code count: epoch 0 is the
    first one. ``lr_milestones = [14]`` halves the rate from the 15th epoch on.
    """

    epochs: int = 0  # 0 skips the stage
    lr: float = 5e-4
    lr_milestones: tuple[int, ...] = ()  # epochs at whose start the rate is multiplied by lr_factor
    lr_factor: float = 0.5
    mixup_prob: float = 0.0
    mixup_until_first_milestone: bool = True  # seed 004 mixes only in the epochs before the first milestone
    best_from_epoch: int = 0  # the best checkpoint is chosen among epochs >= this one
    # Early stopping ends the stage before an epoch >= early_stop_from_epoch when the last
    # early_stop_patience epochs brought no gain over the best one (seed 004: from 35, patience 10,
    # so epochs 0-34 always run). 0 patience: never stop early.
    early_stop_patience: int = 0
    early_stop_from_epoch: int = 0
    # "step": lr times lr_factor at each milestone; "one_cycle": per-batch warm-up from lr / one_cycle_div
    # to lr over one_cycle_pct_start of the stage, then cosine down to lr / one_cycle_final_div.
    lr_schedule: str = "step"
    one_cycle_pct_start: float = 0.3
    one_cycle_div: float = 25.0
    one_cycle_final_div: float = 1e4
    one_cycle_anneal: str = "cos"  # "cos" (fastai) or "linear" (seed 000) between the three rates
    steps_per_epoch: int = 0  # > 0: an epoch is this many batches drawn with replacement (seed 001); 0: one pass
    effects_until_epoch: int = 0  # audio effects run in the epochs before this one; 0: in every epoch
    # Seed 000's switch-off epoch stops all augmentation: mixup then also stops at effects_until_epoch.
    mixup_off_with_effects: bool = False
    f2_below: float = 0.0  # > 0: each epoch trains only on clips whose F2 at threshold 0.2 is below this

    def __post_init__(self) -> None:
        _check(self.epochs >= 0, "epochs", "must be >= 0")
        _check(self.lr > 0, "lr", "must be > 0")
        _check(list(self.lr_milestones) == sorted(set(self.lr_milestones)) and min(self.lr_milestones, default=0) >= 0,
               "lr_milestones", "must be increasing 0-based epoch indices")
        _check(0.0 < self.lr_factor <= 1.0, "lr_factor", "must be in (0, 1]")
        _check(0.0 <= self.mixup_prob <= 1.0, "mixup_prob", "must be in [0, 1]")
        _check(self.best_from_epoch >= 0, "best_from_epoch", "must be a 0-based epoch index (>= 0)")
        _check(self.early_stop_patience >= 0, "early_stop_patience", "must be >= 0")
        _check(self.early_stop_from_epoch >= 0, "early_stop_from_epoch", "must be a 0-based epoch index (>= 0)")
        _check(self.lr_schedule in ("step", "one_cycle"), "lr_schedule", "must be 'step' or 'one_cycle'")
        _check(0.0 < self.one_cycle_pct_start < 1.0, "one_cycle_pct_start", "must be in (0, 1)")
        _check(self.one_cycle_div >= 1.0 and self.one_cycle_final_div >= 1.0, "one_cycle_div",
               "one_cycle_div and one_cycle_final_div must be >= 1")
        _check(self.effects_until_epoch >= 0, "effects_until_epoch", "must be >= 0")
        _check(0.0 <= self.f2_below <= 1.0, "f2_below", "must be in [0, 1]")
        _check(self.one_cycle_anneal in ("cos", "linear"), "one_cycle_anneal", "must be 'cos' or 'linear'")
        _check(self.steps_per_epoch >= 0, "steps_per_epoch", "must be >= 0 (0: one pass over the clips)")


OPTIMIZERS = ("nadam", "adam", "adamw", "sgd")


@dataclass(frozen=True)
class TrainConfig:
    """Two-stage schedule: pretrain on the noisy split, then k-fold fine-tune on the curated one."""

    loss: str = "bce_smooth"  # bce | bce_smooth | focal | lsep | cce
    label_smoothing: float = 0.01  # targets y * (1 - 2e) + e for bce_smooth
    focal_gamma: float = 2.0
    focal_alpha: float | None = None  # None: no class balancing (seed 001); e.g. 0.25 as in Lin et al.
    # How a clip's per-class loss terms combine ("sum" = mean x classes, seed 001's focal) and a factor on
    # the whole loss (seed 001's BCE: 100). Both matter with global_clipnorm and weight decay.
    class_reduction: str = "mean"
    loss_scale: float = 1.0
    # Seed 001's f2cl as its code does it: each batch's loss averages only the clips whose F2 (scores > 0.2
    # against the mixed targets) is below this; 0: off. (The stage key f2_below selects clips per epoch.)
    f2_mask_below: float = 0.0
    # Optimizer: nadam (seed 004) | adam (000, 002; amsgrad for 000) | adamw (001) | sgd. weight_decay is
    # decoupled (variable -= lr * weight_decay * variable) for every optimizer, as Keras applies it.
    optimizer: str = "nadam"
    weight_decay: float = 0.0
    beta_1: float = 0.9  # adam family
    beta_2: float = 0.999
    epsilon: float = 1e-7
    amsgrad: bool = False  # adam / adamw
    momentum: float = 0.0  # sgd
    nesterov: bool = False  # sgd
    global_clipnorm: float = 0.0  # > 0: gradients scaled to at most this global L2 norm (torch clip_grad_norm_)
    pretrain: StageConfig = field(default_factory=StageConfig)
    finetune: StageConfig = field(default_factory=lambda: StageConfig(epochs=40))
    # TTA: "crops": pipeline.eval_crops fixed crops; "full": whole clips; "multi_length": for each of
    # tta_lengths (seconds), tta_random_crops seeded random crops (seed 002).
    tta: str = "crops"
    tta_lengths: tuple[float, ...] = ()
    tta_random_crops: int = 5
    tta_combine: str = "mean"  # how TTA predictions of a clip combine: "mean" or "gmean" (geometric)
    # Seed 003: after fold k's best model wrote its OOF predictions, train it this many more epochs on
    # fold k's validation clips and score the test clips with that model (OOF stays honest).
    retrain_on_val_epochs: int = 0
    # Which model of a retrained fold scores test clips (and predict / export): "retrained", or "mix": the
    # mean of the original and the retrained model (seed 003 mixed both).
    retrain_test: str = "retrained"
    # Seed 000: noisy clips (the noisy CSV, e.g. relabelled) join the curated TRAINING folds of the fine-tune
    # stage; validation / OOF stay curated. "split": fold k gets the k-th of n_splits disjoint parts (seed
    # 000's default); "all": every fold gets all of them (its --share_noisy); "none".
    noisy_in_finetune: str = "none"
    calibration: str = "none"  # "temperature": one temperature fit on the OOF scores -> test_calibrated.npy
    folds_to_run: tuple[int, ...] = ()  # empty: every fold
    precision: str = "float32"  # float32 | mixed_float16 | mixed_bfloat16 (frontend, output stay float32)
    jit_compile: bool = False  # XLA-compile the train step
    strategy: str = "default"  # default | mirrored (GPUs of one machine) | multi_worker (TF_CONFIG)
    # A run folder (absolute, or relative to the folder holding this member's run folder: run.sh's RUNS):
    # each model starts from the best weights of a stage there, layers matched by name and shape.
    init_from: str = ""
    # Which stage of init_from: "same" (pretrain from its pretrain, fold k from its fold k) or
    # "pretrain" (every model from its pretrain stage: seed 004's max3exam fine-tunes v1mix's pretraining).
    init_from_stage: str = "same"

    def __post_init__(self) -> None:
        _check(self.loss in ("bce", "bce_smooth", "focal", "lsep", "cce"), "train.loss",
               "must be one of bce, bce_smooth, focal, lsep, cce")
        _check(0.0 <= self.label_smoothing < 0.5, "train.label_smoothing", "must be in [0, 0.5)")
        _check(self.finetune.epochs >= 1, "train.finetune.epochs", "must be >= 1")
        _check(self.tta in ("crops", "full", "multi_length"), "train.tta",
               "must be 'crops', 'full' or 'multi_length'")
        _check(self.tta != "multi_length" or (len(self.tta_lengths) >= 1 and min(self.tta_lengths) > 0),
               "train.tta_lengths", "multi_length TTA needs at least one length in seconds (> 0)")
        _check(self.tta_random_crops >= 1, "train.tta_random_crops", "must be >= 1")
        _check(self.tta_combine in ("mean", "gmean"), "train.tta_combine", "must be 'mean' or 'gmean'")
        _check(self.retrain_on_val_epochs >= 0, "train.retrain_on_val_epochs", "must be >= 0")
        _check(self.retrain_test in ("retrained", "mix"), "train.retrain_test", "must be 'retrained' or 'mix'")
        _check(self.noisy_in_finetune in ("none", "split", "all"), "train.noisy_in_finetune",
               "must be 'none', 'split' or 'all'")
        _check(self.focal_gamma >= 0, "train.focal_gamma", "must be >= 0")
        _check(self.focal_alpha is None or 0.0 <= self.focal_alpha <= 1.0, "train.focal_alpha",
               "must be in [0, 1] (or unset: no class balancing)")
        _check(self.class_reduction in ("mean", "sum"), "train.class_reduction", "must be 'mean' or 'sum'")
        _check(self.class_reduction == "mean" or self.loss in ("bce", "bce_smooth", "focal"), "train.class_reduction",
               "'sum' needs a per-class loss (bce, bce_smooth or focal)")
        _check(self.loss_scale > 0, "train.loss_scale", "must be > 0")
        _check(0.0 <= self.f2_mask_below <= 1.0, "train.f2_mask_below", "must be in [0, 1] (0: off)")
        _check(self.optimizer in OPTIMIZERS, "train.optimizer", f"must be one of {', '.join(OPTIMIZERS)}")
        _check(self.weight_decay >= 0, "train.weight_decay", "must be >= 0")
        _check(0.0 <= self.beta_1 < 1.0 and 0.0 <= self.beta_2 < 1.0, "train.beta_1",
               "beta_1 and beta_2 must be in [0, 1)")
        _check(self.epsilon > 0, "train.epsilon", "must be > 0")
        _check(0.0 <= self.momentum < 1.0, "train.momentum", "must be in [0, 1)")
        _check(self.global_clipnorm >= 0, "train.global_clipnorm", "must be >= 0 (0: no clipping)")
        _check(self.calibration in ("none", "temperature"), "train.calibration", "must be 'none' or 'temperature'")
        _check(self.precision in ("float32", "mixed_float16", "mixed_bfloat16"), "train.precision",
               "must be 'float32', 'mixed_float16' or 'mixed_bfloat16'")
        _check(self.strategy in ("default", "mirrored", "multi_worker"), "train.strategy",
               "must be 'default', 'mirrored' or 'multi_worker'")
        _check(self.init_from_stage in ("same", "pretrain"), "train.init_from_stage", "must be 'same' or 'pretrain'")


@dataclass(frozen=True)
class Recipe:
    """One ensemble member: data handling, architecture and training schedule."""

    name: str = "member"
    audio: AudioConfig = field(default_factory=AudioConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    folds: FoldsConfig = field(default_factory=FoldsConfig)
    frontend: FrontendConfig = field(default_factory=FrontendConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        folds, n = self.train.folds_to_run, self.folds.n_splits
        _check(len(set(folds)) == len(folds), "train.folds_to_run", f"lists a fold twice ({list(folds)})")
        _check(all(0 <= k < n for k in folds), "train.folds_to_run",
               f"folds are numbered 0..{n - 1} (folds.n_splits = {n}), got {list(folds)}")


def _check(ok: bool, key: str, why: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {why}")


T = TypeVar("T")


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from a (TOML) dict, rejecting unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'recipe'}: expected a table, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            raise ConfigError(f"{prefix}{key}: unknown key (known: {', '.join(sorted(names))})")
    kwargs = {key: _coerce(hints[key], value, f"{prefix}{key}") for key, value in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError as err:
        if prefix and not str(err).startswith(prefix):
            raise ConfigError(f"{prefix}{err}") from None
        raise


def _coerce(hint: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, key + ".")
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(option, value, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if origin is tuple:
        item_type = typing.get_args(hint)[0]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return tuple(_coerce(item_type, v, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table, got {value!r}")
        return dict(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if hint in (int, str, bool):
        if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
            raise ConfigError(f"{key}: expected {hint.__name__}, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {hint}")


def to_dict(obj: Any) -> dict[str, Any]:
    """Dataclass tree -> plain dict (tuples as lists, None dropped) ready for TOML/JSON."""
    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if v is not None}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    return clean(dataclasses.asdict(obj))


def _load_toml(path: str | Path, cls: type[T], what: str) -> T:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} not found; pass an existing TOML") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err}); fix the syntax") from None
    if not data:  # an empty file would silently mean "every default", e.g. a full-size model
        raise ConfigError(f"{path}: the {what} is empty; set at least its name and the sections you change "
                          "(see models/demo.toml or stacking/lc1d.toml)")
    try:
        return from_dict(cls, data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def load_recipe(path: str | Path) -> Recipe:
    """Read a member recipe TOML (see models/*.toml), or a packaged one by name (``"se"``); errors name
    the file and the bad key."""
    from freesound_tf.recipes import resolve_recipe

    return _load_toml(resolve_recipe(path, "member"), Recipe, "recipe")


def scale_epochs(recipe: Recipe, factor: float) -> Recipe:
    """The recipe with every epoch count and epoch index multiplied by ``factor`` (quick runs).

    Indices stay 0-based: a milestone (or another epoch field) above 0 stays above 0, so the first
    epoch keeps its role; ``best_from_epoch`` stays inside the scaled stage.
    """
    if factor == 1.0:
        return recipe
    if factor <= 0:
        raise ConfigError(f"epochs scale {factor}: must be > 0")

    def scaled(n: int) -> int:
        return n if n == 0 else max(1, round(n * factor))

    def stage(s: StageConfig) -> StageConfig:
        if s.epochs == 0:
            return s
        epochs = scaled(s.epochs)
        return dataclasses.replace(
            s, epochs=epochs, lr_milestones=tuple(sorted({scaled(m) for m in s.lr_milestones})),
            best_from_epoch=min(scaled(s.best_from_epoch), epochs - 1),
            early_stop_from_epoch=scaled(s.early_stop_from_epoch), effects_until_epoch=scaled(s.effects_until_epoch))

    train = dataclasses.replace(recipe.train, pretrain=stage(recipe.train.pretrain),
                                finetune=stage(recipe.train.finetune))
    return dataclasses.replace(recipe, train=train)


@dataclass(frozen=True)
class StackerConfig:
    """Seed-004 stacker: per-class locally-connected blend of member scores, trained k-fold on their OOF.

    ``weights`` gives each member (by its recipe name) a weight in the weighted-mean channel;
    members not listed get ``default_weight``.
    """

    name: str = "lc1d"
    weights: dict[str, float] = field(default_factory=dict)
    default_weight: float = 1.0
    shift: float = 1.6  # output (tanh(x - shift) + 1) / 2
    # The seed's Dense(classes) over all classes' blends (label correlation); false drops those
    # classes**2 weights, which a few hundred OOF clips cannot fit without overfitting.
    label_correlation: bool = True
    lr: float = 1e-4
    batch_size: int = 40
    max_epochs: int = 1000
    # Early stopping, best weights restored. "lrap" (seed 004): the validation fold's label-ranking
    # average precision, scored before the first epoch and after each one; stop when `patience`
    # scores in a row brought no gain. "bce": Keras' EarlyStopping on the validation fold's BCE.
    stop_on: str = "lrap"
    patience: int = 15
    folds: FoldsConfig = field(default_factory=FoldsConfig)
    # The submitted ensemble is the member, blend or stacker with the best OOF lwlrap; this many outer
    # folds of nested cross-validation check that rule on held-out clips (0: no check). See stacking/choice.py.
    selection_folds: int = 5

    def __post_init__(self) -> None:
        for member, weight in self.weights.items():
            _check(isinstance(weight, (int, float)) and not isinstance(weight, bool) and weight > 0,
                   f"weights.{member}", f"must be a number > 0, got {weight!r}")
        _check(self.default_weight > 0, "default_weight", "must be > 0")
        _check(self.lr > 0, "lr", "must be > 0")
        _check(self.batch_size >= 1, "batch_size", "must be >= 1")
        _check(self.max_epochs >= 1, "max_epochs", "must be >= 1")
        _check(self.patience >= 1, "patience", "must be >= 1")
        _check(self.stop_on in ("lrap", "bce"), "stop_on", "must be 'lrap' or 'bce'")
        _check(self.selection_folds == 0 or self.selection_folds >= 2, "selection_folds", "must be 0 (no check) or >= 2")

    def weight(self, member: str) -> float:
        """Weighted-mean weight of the member named ``member``."""
        return float(self.weights.get(member, self.default_weight))


def load_stacker_recipe(path: str | Path) -> StackerConfig:
    """Read a stacker recipe TOML (see stacking/*.toml), or a packaged one by name (``"lc1d"``); errors
    name the file and the bad key."""
    from freesound_tf.recipes import resolve_recipe

    return _load_toml(resolve_recipe(path, "stacker"), StackerConfig, "stacker recipe")
