"""tf.data input pipelines over the HDF5 waveform cache.

Every pipeline yields a dict of named model inputs (``waveform``, ``global_features``,
``length``) so a model picks what it uses. Audio is read crop by crop from the cache, so
memory does not grow with the number of clips. Randomness (shuffle order, crop offsets,
mixup) is drawn from seeded streams: the same seed gives the same batches.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import tensorflow as tf

from freesound_tf.augmentation import EffectChain, mixup_batch
from freesound_tf.augmentation.clip_ops import masked_copy, shuffle_chunks
from freesound_tf.config import AugmentConfig, PipelineConfig

ALL_INPUTS = ("waveform", "global_features", "length")


class CacheReader(Protocol):
    """What the pipeline needs from :class:`freesound_tf.data.cache.WaveformCache`."""

    lengths: np.ndarray
    length_feature: np.ndarray
    steps: int

    def read(self, i: int, start: int = 0, stop: int | None = None) -> np.ndarray: ...

    def read_global_features(self, indices: np.ndarray) -> np.ndarray:
        """Rows in any order, repeats allowed (eval batches repeat a clip once per crop)."""


MIN_CLIP_SECONDS = 1.0  # whole clips shorter than this are zero-padded to it (whole STFT frames)


def _offset(length: int, crop_len: int, position: float) -> int:
    span = abs(length - crop_len)
    # floor(position * (span + 1)) makes a uniform position in [0, 1) a uniform integer offset.
    return min(int(position * (span + 1)), span)


def fit_window(clip: np.ndarray, crop_len: int, position: float) -> np.ndarray:
    """``clip`` cut or zero-padded to ``crop_len`` samples, the window (or the clip in it) placed at ``position``."""
    offset = _offset(len(clip), crop_len, position)
    if len(clip) >= crop_len:
        return clip[offset:offset + crop_len]
    out = np.zeros(crop_len, np.float32)
    out[offset:offset + len(clip)] = clip
    return out


def crop_clip(cache: CacheReader, row: int, crop_len: int, position: float) -> np.ndarray:
    """Crop (or zero-pad) trimmed clip ``row`` to ``crop_len`` samples.

    ``position`` in [0, 1] places the window: 0 = start, 0.5 = middle, 1 = end of the clip.
    A clip shorter than the window is placed at the same relative offset inside it.
    """
    length = int(cache.lengths[row])
    if length >= crop_len:
        offset = _offset(length, crop_len, position)
        return cache.read(row, offset, offset + crop_len)
    return fit_window(cache.read(row, 0, length), crop_len, position)


def _read_side_inputs(cache: CacheReader, rows: np.ndarray, inputs: Sequence[str]) -> dict[str, np.ndarray]:
    out = {}
    if "global_features" in inputs:
        out["global_features"] = cache.read_global_features(rows).astype(np.float32)
    if "length" in inputs:
        out["length"] = cache.length_feature[rows].astype(np.float32).reshape(-1, 1)
    return out


def _signature(inputs: Sequence[str], wave_len: int | None, steps: int) -> dict[str, tf.TensorSpec]:
    shapes = {"waveform": (None, wave_len), "global_features": (None, steps, 12), "length": (None, 1)}
    return {name: tf.TensorSpec(shapes[name], tf.float32) for name in inputs}


@dataclass(frozen=True)
class EpochPlan:
    """The epochs a continuous training input serves (``dataset(epochs=...)`` of an input whose
    ``continuous`` is True): epochs ``first``, ``first + 1``, ... back to back without end, epoch e mixed up
    with probability ``mixup[e]`` (the last one after the end)."""

    first: int
    mixup: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.first < 0 or not self.mixup:
            raise ValueError(f"EpochPlan needs first >= 0 and a mixup probability per epoch, got {self}")


class TrainInput:
    """Training batches: shuffled clips, a random crop each, optional batch mixup.

    ``mixup_prob`` is a plain attribute the training loop may change between epochs (seed 004
    stops mixup at the first learning-rate milestone); batches already prefetched keep the old value.
    ``effects_prob`` likewise: the probability that a crop goes through seed 000's audio effects
    (``augment``), ``augment.p_effects`` at first; see :meth:`set_effects`.
    """

    continuous = False  # whether dataset() can serve an EpochPlan (one iterator for many epochs)

    def __init__(
        self,
        cache: CacheReader,
        labels: np.ndarray,
        config: PipelineConfig,
        sample_rate: int,
        indices: np.ndarray | None = None,
        inputs: Sequence[str] = ALL_INPUTS,
        mixup_prob: float = 0.0,
        augment: AugmentConfig | None = None,
        steps_per_epoch: int = 0,
    ) -> None:
        self.cache = cache
        self.labels = np.asarray(labels, np.float32)
        self.config = config
        self.crop_len = int(round(config.crop_seconds * sample_rate))
        self.indices = np.arange(len(self.labels)) if indices is None else np.asarray(indices, np.int64)
        if len(self.indices) == 0:
            raise ValueError("TrainInput: no clips to train on (empty index set)")
        # Seed 002: each batch gets its own length, uniform between these percentiles of the clips' lengths
        # (or these seconds).
        percentiles, seconds = config.random_length_percentiles, config.random_length_seconds
        bounds = (np.percentile(cache.lengths[self.indices], percentiles) if percentiles
                  else np.asarray(seconds) * sample_rate)
        self.length_range = tuple(max(1, int(round(v))) for v in bounds) if percentiles or seconds else None
        self.min_len = int(round(MIN_CLIP_SECONDS * sample_rate))
        self.sample_rate = sample_rate
        self.steps_per_epoch = steps_per_epoch
        self.inputs = tuple(inputs)
        self.mixup_prob = mixup_prob
        self.augment = augment or AugmentConfig()
        self.effects_prob = self.augment.p_effects
        self.shuffle_prob = self.augment.p_shuffle_chunks
        self.effects = EffectChain(self.augment, sample_rate, workers=config.effects_workers)
        if self.augment.short_clip_masked_copy and config.crop_mode != "window":
            raise ValueError("augment.short_clip_masked_copy: needs pipeline.crop_mode = 'window' (the copy fills "
                             "the training crop)")
        self.active = self.indices  # the clips epochs draw from; see set_active

    @property
    def drop_remainder(self) -> bool:
        # A partial last batch costs a second trace of the train step and a noisy BN update; the
        # clips it would hold land in full batches in later epochs, since every epoch reshuffles.
        return len(self.indices) >= self.config.batch_size

    def __len__(self) -> int:
        """Batches per epoch: ``steps_per_epoch``, or one pass over the clips."""
        if self.steps_per_epoch:
            return self.steps_per_epoch
        n, b = len(self.indices), self.config.batch_size
        return n // b if self.drop_remainder else 1

    def set_effects(self, on: bool) -> None:
        """Audio effects (and seed 000's chunk shuffle) on (at their ``augment`` probabilities) or off for
        the next epochs (seed 000 stops them late)."""
        self.effects_prob = self.augment.p_effects if on else 0.0
        self.shuffle_prob = self.augment.p_shuffle_chunks if on else 0.0

    def set_active(self, rows: np.ndarray | None) -> None:
        """Draw the next epochs only from ``rows`` (a subset of ``indices``); None: from all of them.

        An epoch keeps its length (``len(self)`` batches, so the dataset built once and per-step
        schedules stay valid): shuffled slot p takes active clip p mod len(rows), each active clip
        coming about len(indices) / len(rows) times, like seed 001's fixed-size epochs. Batches
        already prefetched keep the old set.
        """
        active = self.indices if rows is None else np.asarray(rows, np.int64)
        if len(active) == 0 or not np.isin(active, self.indices).all():
            raise ValueError("TrainInput.set_active: rows must be a non-empty subset of indices (None: all)")
        self.active = active

    def _crop_length(self, rng: np.random.Generator) -> int:
        """This batch's length in samples: ``crop_seconds``, or uniform in ``length_range`` (no draw without)."""
        if self.length_range is None:
            return self.crop_len
        low, high = self.length_range
        return int(rng.integers(low, high + 1))

    def _active_rows(self, slots: np.ndarray) -> np.ndarray:
        return self.active[slots % len(self.active)]

    def _clip_audio(self, row: int, crop_len: int, position: float, rng: np.random.Generator | None) -> np.ndarray:
        """Clip ``row``'s training audio before padding: a ``crop_len`` window of a longer clip, else the
        whole clip; then the per-clip augmentations (``rng`` is None when none is on)."""
        length = int(self.cache.lengths[row])
        offset = _offset(length, crop_len, position) if length >= crop_len else 0
        clip = self.cache.read(row, offset, offset + min(length, crop_len))
        if rng is None:
            return clip
        augment = self.augment
        if self.shuffle_prob > 0 and rng.random() < self.shuffle_prob:
            clip = shuffle_chunks(clip, int(round(augment.shuffle_chunk_seconds * self.sample_rate)), rng)
        if augment.short_clip_masked_copy and length < crop_len:
            clip = masked_copy(clip, self.sample_rate, rng, augment.masked_copy_time_fraction,
                               augment.masked_copy_freq_fraction)
        return clip

    def _waveforms(self, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        positions = rng.random(len(rows))
        if self.config.crop_mode == "whole":
            # Seed 000: as long as the batch's longest clip, at most crop_seconds; shorter clips start at 0.
            lengths = self.cache.lengths[rows]
            crop_len = min(max(int(lengths.max()), self.min_len), self.crop_len)
            positions = np.where(lengths > crop_len, positions, 0.0)
        else:
            crop_len = self._crop_length(rng)
        per_clip = self.shuffle_prob > 0 or self.augment.short_clip_masked_copy
        clip_rng = rng.spawn(1)[0] if per_clip else None  # a child stream: the other draws stay the same
        clips = [self._clip_audio(int(r), crop_len, p, clip_rng) for r, p in zip(rows, positions)]
        return np.stack([fit_window(c, crop_len, p) for c, p in zip(clips, positions)])

    def _load(self, rows: np.ndarray, seed: np.int64) -> tuple[np.ndarray, ...]:
        rng = np.random.default_rng(int(seed) & 0x7FFFFFFFFFFFFFFF)
        batch = {"waveform": self._waveforms(rows, rng)}
        batch.update(_read_side_inputs(self.cache, rows, self.inputs))
        batch = {k: batch[k] for k in self.inputs}
        cfg = self.config
        batch, labels = mixup_batch(batch, self.labels[rows], rng, self.mixup_prob, cfg.mixup_mode,
                                    cfg.mixup_lambda, cfg.mixup_alpha, cfg.mixup_label_rule,
                                    uniform_range=cfg.mixup_uniform_range, scope=cfg.mixup_scope,
                                    side_inputs=cfg.mixup_side_inputs)
        if self.effects_prob > 0:  # after mixup, as seed 000; a child stream keeps crops and mixup draws unchanged
            batch["waveform"] = self.effects.batch(batch["waveform"], rng.spawn(1)[0], self.effects_prob)
        return tuple(batch[k] for k in self.inputs) + (labels,)

    def dataset(self, shards: int = 1, shard: int = 0, replicas: int = 1) -> tf.data.Dataset:
        """A finite dataset of one epoch; iterating it again reshuffles and redraws crops.

        Distributed training: worker ``shard`` of ``shards`` keeps every shards-th batch of the
        epoch's shuffled order (the same order on every worker, so the workers' batches partition
        it), and an epoch is cut to a multiple of ``replicas`` (all replicas, all workers) batches
        so that every replica runs the same number of steps.
        """
        cfg = self.config
        n_batches = len(self) // replicas * replicas
        if n_batches == 0:
            raise ValueError(f"TrainInput: {len(self.indices)} clips make no full batch of {cfg.batch_size} "
                             f"for each of {replicas} replicas; lower pipeline.batch_size or add clips")
        n_slots = len(self.indices)  # slots, see set_active
        if self.steps_per_epoch:
            # Seed 001's fixed-size epochs: slots drawn uniformly with replacement, the same on every worker.
            order = tf.data.Dataset.random(seed=cfg.seed + 1, rerandomize_each_iteration=True).map(
                lambda v: tf.math.floormod(v, n_slots))
            rows = order.batch(cfg.batch_size, drop_remainder=True).take(n_batches)
        else:
            order = tf.data.Dataset.from_tensor_slices(np.arange(n_slots))
            order = order.shuffle(n_slots, seed=cfg.seed, reshuffle_each_iteration=True)
            rows = order.batch(cfg.batch_size, drop_remainder=self.drop_remainder).take(n_batches)
        # Workers draw crops and mixup from different streams.
        seeds = tf.data.Dataset.random(seed=cfg.seed + shard, rerandomize_each_iteration=True)
        rows = rows.shard(shards, shard).map(
            lambda slots: tf.numpy_function(self._active_rows, [slots], tf.int64, stateful=True))
        batches = tf.data.Dataset.zip(rows, seeds)
        fixed = self.length_range is None and cfg.crop_mode == "window"
        spec = _signature(self.inputs, self.crop_len if fixed else None, self.cache.steps)
        n_classes = self.labels.shape[1]

        def load(rows: tf.Tensor, seed: tf.Tensor):
            out = tf.numpy_function(self._load, [rows, seed], [tf.float32] * (len(self.inputs) + 1),
                                    stateful=False)
            features = {}
            for name, tensor in zip(self.inputs, out):
                tensor.set_shape(spec[name].shape)
                features[name] = tensor
            out[-1].set_shape((None, n_classes))
            return features, out[-1]

        return batches.map(load, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def crop_positions(n_crops: int) -> np.ndarray:
    """Evenly spaced window positions: 1 crop -> middle; 3 -> start, middle, end."""
    return np.array([0.5]) if n_crops == 1 else np.linspace(0.0, 1.0, n_crops)


def eval_dataset(
    cache: CacheReader,
    indices: np.ndarray,
    crop_seconds: float,
    sample_rate: int,
    batch_size: int,
    n_crops: int = 3,
    labels: np.ndarray | None = None,
    inputs: Sequence[str] = ALL_INPUTS,
) -> tf.data.Dataset:
    """Deterministic crops for validation / TTA, clip-major: clip 0 crops 0..n-1, clip 1, ...

    Average the predictions with :func:`average_crops`. With ``labels`` the dataset yields
    ``(inputs, labels)`` (each clip's labels repeated per crop), otherwise inputs only.
    """
    crop_len = int(round(crop_seconds * sample_rate))
    indices = np.asarray(indices, np.int64)
    rows = np.repeat(indices, n_crops)
    positions = np.tile(crop_positions(n_crops), len(indices)).astype(np.float32)
    inputs = tuple(inputs)

    def load(rows_b: np.ndarray, pos_b: np.ndarray) -> tuple[np.ndarray, ...]:
        batch = {"waveform": np.stack([crop_clip(cache, int(r), crop_len, float(p))
                                       for r, p in zip(rows_b, pos_b)])}
        batch.update(_read_side_inputs(cache, rows_b, inputs))
        return tuple(batch[k] for k in inputs)

    spec = _signature(inputs, crop_len, cache.steps)

    def load_tf(rows_b: tf.Tensor, pos_b: tf.Tensor):
        out = tf.numpy_function(load, [rows_b, pos_b], [tf.float32] * len(inputs), stateful=False)
        for name, tensor in zip(inputs, out):
            tensor.set_shape(spec[name].shape)
        return dict(zip(inputs, out))

    ds = tf.data.Dataset.from_tensor_slices((rows, positions)).batch(batch_size)
    ds = ds.map(load_tf, num_parallel_calls=tf.data.AUTOTUNE)
    if labels is not None:
        targets = np.asarray(labels, np.float32)[rows]
        ds = tf.data.Dataset.zip(ds, tf.data.Dataset.from_tensor_slices(targets).batch(batch_size))
    return ds.prefetch(tf.data.AUTOTUNE)


def average_crops(predictions: np.ndarray, n_crops: int) -> np.ndarray:
    """Clip-level scores from the clip-major crop predictions of :func:`eval_dataset`."""
    return predictions.reshape(-1, n_crops, predictions.shape[-1]).mean(axis=1)


def length_buckets(lengths: np.ndarray, batch_size: int, max_batch_samples: int) -> list[np.ndarray]:
    """Group positions of ``lengths`` into batches of similar length (sorted, greedy).

    A batch holds at most ``batch_size`` clips and at most ``max_batch_samples`` padded samples,
    so long clips come in small batches and short ones in full batches.
    """
    order = np.argsort(lengths, kind="stable")
    batches, current = [], []
    for pos in order:
        longest = int(lengths[pos])  # sorted ascending: the newest clip is the longest
        if current and (len(current) >= batch_size or (len(current) + 1) * longest > max_batch_samples):
            batches.append(np.array(current))
            current = []
        current.append(pos)
    if current:
        batches.append(np.array(current))
    return batches


def full_length_dataset(
    cache: CacheReader,
    indices: np.ndarray,
    sample_rate: int,
    batch_size: int,
    max_batch_seconds: float = 600.0,
    min_seconds: float = MIN_CLIP_SECONDS,
    inputs: Sequence[str] = ALL_INPUTS,
) -> tuple[tf.data.Dataset, np.ndarray]:
    """Whole trimmed clips, length-bucketed to keep padding small.

    Returns the dataset and the cache rows in the order its predictions come out; use
    :func:`restore_order` to put predictions back in the order of ``indices``. Clips shorter
    than ``min_seconds`` are zero-padded to it so every clip yields whole STFT frames.
    """
    indices = np.asarray(indices, np.int64)
    min_len = int(round(min_seconds * sample_rate))
    lengths = np.maximum(cache.lengths[indices], min_len)
    batches = length_buckets(lengths, batch_size, int(max_batch_seconds * sample_rate))
    inputs = tuple(inputs)

    def generate() -> Iterator[dict[str, np.ndarray]]:
        for positions in batches:
            rows = indices[positions]
            width = int(lengths[positions].max())
            wave = np.zeros((len(rows), width), np.float32)
            for k, row in enumerate(rows):
                clip = cache.read(int(row))
                wave[k, :len(clip)] = clip
            batch = {"waveform": wave, **_read_side_inputs(cache, rows, inputs)}
            yield {k: batch[k] for k in inputs}

    ds = tf.data.Dataset.from_generator(generate, output_signature=_signature(inputs, None, cache.steps))
    order = indices[np.concatenate(batches)] if batches else indices
    return ds.prefetch(tf.data.AUTOTUNE), order


def restore_order(predictions: np.ndarray, order: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Reorder predictions made in ``order`` (cache rows) to follow ``indices``."""
    where = {int(row): k for k, row in enumerate(order)}
    return predictions[[where[int(row)] for row in indices]]
