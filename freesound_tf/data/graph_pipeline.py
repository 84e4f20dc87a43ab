"""Training batches built by TensorFlow ops only: random crops, zero-padding, mixup and side inputs in-graph.

:class:`GraphTrainInput` is a drop-in for :class:`~freesound_tf.data.pipeline.TrainInput` (same epochs,
sharding, ``mixup_prob``, ``set_active``) without ``tf.numpy_function``, so it runs at accelerator
speed and can be traced for TPUs. Every batch follows the same steps as the numpy pipeline:

1. the epoch's shuffled slots -> cache rows (the active ones, see ``set_active``), one batch at a time;
2. a plan per batch from stateless random ops seeded by the batch's seed (one per batch from
   ``Dataset.random(seed + shard)``): the crop length, each clip's crop offset (uniform over the
   ``|length - crop| + 1`` positions; short clips are placed at that offset inside zeros), the mixup
   partners and weights, and the mixed labels and side inputs;
3. per batch, one function (XLA-compiled when the crop length is fixed) cuts every clip's window from
   the int16 samples, zeroes what lies outside the clip, scales it to float with its mixup weight and
   adds its partner's window (:func:`memory_waves`, :func:`mixed_waves`): one pass over the batch.

The int16 samples come from a :class:`MemorySource` (the whole cache as one flat tensor) when they fit
``pipeline.graph_memory_fraction`` of the machine's memory, otherwise from a :class:`RecordSource`
(sharded TFRecords, see :mod:`freesound_tf.data.tfrecords`) whose epochs read a shuffled stream of
records (shard order shuffled, shards interleaved, a shuffle buffer of records) and crop each record
as it arrives, with its own seed; step 2 then plans only the mixup. With records, every worker reads
the whole stream and keeps its own batches.

Training runs this input continuously (an :class:`~freesound_tf.data.pipeline.EpochPlan`): one endless
dataset for a whole stage, epochs back to back, so tf.data builds its iterator once (40-60 ms of function
instantiation, plus filling the records' shuffle buffer, that a new iterator per epoch would pay every
epoch), while each batch still knows its epoch and takes that epoch's mixup probability.
"""
from __future__ import annotations

import os
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import tensorflow as tf
from tensorflow.compiler.tf2xla.python import xla

from freesound_tf.config import AugmentConfig, ConfigError, PipelineConfig
from freesound_tf.data import tfrecords
from freesound_tf.data.cache import PCM_SCALE, WaveformCache
from freesound_tf.data.joined_cache import JoinedCache
from freesound_tf.data.pipeline import ALL_INPUTS, EpochPlan, TrainInput

SHUFFLE_BYTES = 64 << 20  # records held by a RecordSource's shuffle buffer (on top of shuffled shards), in bytes
PY_OPS = frozenset({"PyFunc", "PyFuncStateless", "EagerPyFunc"})


@dataclass(frozen=True)
class MixupSpec:
    """How a batch is mixed; the names and meanings of ``PipelineConfig``'s ``mixup_*`` keys."""

    mode: str = "fixed"  # fixed | beta | uniform
    lam: float = 0.7
    alpha: float = 0.4
    uniform_range: tuple[float, ...] = (0.0, 1.0)
    label_rule: str = "blend"  # blend | or
    scope: str = "example"  # example | batch
    side_inputs: str = "blend"  # blend | keep

    @classmethod
    def from_config(cls, config: PipelineConfig) -> MixupSpec:
        return cls(config.mixup_mode, config.mixup_lambda, config.mixup_alpha, tuple(config.mixup_uniform_range),
                   config.mixup_label_rule, config.mixup_scope, config.mixup_side_inputs)


def _seed(seed: tf.Tensor, k: int) -> tf.Tensor:
    """The k-th stateless seed pair of a batch seed."""
    return tf.stack([seed, tf.constant(k, tf.int64)])


def draw_mixup(n: tf.Tensor, seed: tf.Tensor, prob: tf.Tensor, spec: MixupSpec) -> tuple[tf.Tensor, tf.Tensor]:
    """(partner, weight) of a batch of ``n``, as ``augmentation.mixup_batch`` draws them.

    ``weight`` is each example's own share (float32); 1 for examples not mixed and for fixed points
    of the permutation. ``scope="batch"``: one draw decides for the whole batch, one weight for all.
    """
    shape = (n,) if spec.scope == "example" else ()
    mixed = tf.random.stateless_uniform(shape, _seed(seed, 10)) < prob
    partner = tf.random.experimental.stateless_shuffle(tf.range(n), _seed(seed, 11))
    if spec.mode == "fixed":
        weight = tf.fill(shape, tf.constant(spec.lam, tf.float32))
    elif spec.mode == "uniform":
        low, high = spec.uniform_range
        weight = tf.random.stateless_uniform(shape, _seed(seed, 12), low, high)
    else:  # Beta(alpha, alpha) as a ratio of gammas; float64 so that both never underflow to 0
        g1 = tf.random.stateless_gamma(shape, _seed(seed, 12), spec.alpha, dtype=tf.float64)
        g2 = tf.random.stateless_gamma(shape, _seed(seed, 13), spec.alpha, dtype=tf.float64)
        weight = tf.cast(g1 / (g1 + g2), tf.float32)
    on = tf.logical_and(mixed, tf.not_equal(partner, tf.range(n)))
    return partner, tf.where(on, weight, tf.ones_like(on, tf.float32))


def mix_rows(x: tf.Tensor, partner: tf.Tensor, weight: tf.Tensor) -> tf.Tensor:
    """``w * x + (1 - w) * x[partner]`` row-wise."""
    w = tf.reshape(weight, tf.concat([tf.shape(weight), tf.ones(tf.rank(x) - 1, tf.int32)], 0))
    return w * x + (1.0 - w) * tf.gather(x, partner)


def mix_labels(y: tf.Tensor, partner: tf.Tensor, weight: tf.Tensor, rule: str) -> tf.Tensor:
    if rule == "or":
        return tf.where((weight < 1.0)[:, None], tf.maximum(y, tf.gather(y, partner)), y)
    return mix_rows(y, partner, weight)


def crop_window(length: tf.Tensor, crop: tf.Tensor, position: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """(start, size, before) of the crop of a clip of ``length`` samples: ``size`` samples from ``start``,
    after ``before`` zeros. ``position`` uniform in [0, 1) makes the offset uniform over the
    ``|length - crop| + 1`` places, as ``pipeline.crop_clip`` draws it."""
    span = tf.abs(length - crop)
    offset = tf.minimum(tf.cast(position * tf.cast(span + 1, tf.float64), tf.int64), span)
    long = length >= crop
    return tf.where(long, offset, 0), tf.minimum(length, crop), tf.where(long, tf.zeros_like(offset), offset)


def mixed_waves(pcm: tf.Tensor, valid: tf.Tensor | None, weight: tf.Tensor, partner: tf.Tensor) -> tf.Tensor:
    """(batch, crop) float32: row i is ``weight[i]`` x crop i + (1 - ``weight[i]``) x crop ``partner[i]``.

    ``pcm``: the batch's int16 windows; ``valid``: where they hold the clip (elsewhere zeros), None when
    they are zero-padded already. Each crop is scaled by its share / 32767 (the cache's ``PCM_SCALE``)
    in one multiply, so an unmixed row (weight 1) is exactly its dequantized crop.
    """
    own = tf.cast(pcm, tf.float32) * (weight / PCM_SCALE)[:, None]
    other = tf.cast(tf.gather(pcm, partner), tf.float32) * ((1.0 - weight) / PCM_SCALE)[:, None]
    if valid is not None:
        own, other = tf.where(valid, own, 0.0), tf.where(tf.gather(valid, partner), other, 0.0)
    return own + other


def memory_waves(samples: tf.Tensor, first: tf.Tensor, before: tf.Tensor, size: tf.Tensor, weight: tf.Tensor,
                 partner: tf.Tensor, crop: int | tf.Tensor, compiled: bool = False) -> tf.Tensor:
    """:func:`mixed_waves` of the windows ``samples[first[i]:first[i] + crop]`` of a zero-margined flat
    tensor; the clip fills ``[before[i], before[i] + size[i])`` of window i. ``compiled``: traced for XLA,
    where a window is an XLA dynamic slice (``tf.slice`` would make its start a compile-time constant,
    one compilation per batch)."""
    if compiled:
        def cut(at: tf.Tensor) -> tf.Tensor:
            return xla.dynamic_slice(samples, tf.reshape(at, [1]), [crop])
    else:
        def cut(at: tf.Tensor) -> tf.Tensor:
            return tf.slice(samples, [at], [crop])
    pcm = tf.map_fn(cut, first, fn_output_signature=tf.int16)
    t = tf.range(tf.cast(crop, tf.int64), dtype=tf.int64)[None, :]
    valid = (t >= before[:, None]) & (t < (before + size)[:, None])
    return mixed_waves(pcm, valid, weight, partner)


def total_memory() -> int:
    """Bytes of memory this process may use: physical memory, or the cgroup limit when lower."""
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit():
            total = min(total, int(limit))
    except OSError:
        pass
    return total


def fits_in_memory(cache: WaveformCache, config: PipelineConfig) -> bool:
    """Whether the cache's int16 samples fit ``pipeline.graph_memory_fraction`` of the memory."""
    return 2 * int(np.sum(cache.lengths)) <= config.graph_memory_fraction * total_memory()


class MemorySource:
    """All int16 samples of a cache as one flat tensor (zero-copy from an aligned numpy buffer) with
    ``margin`` zeros before and after, so that any window of up to ``margin`` samples around a clip is
    one fixed-size slice; ``offsets`` are the clips' starts in it. Shared by every training input over the
    same cache file and margin while any is alive. A :class:`JoinedCache` gets its parts back to back
    (one copy, for its lifetime)."""

    _loaded: weakref.WeakValueDictionary = weakref.WeakValueDictionary()

    def __init__(self, samples: tf.Tensor, features: tf.Tensor, offsets: np.ndarray, steps: int) -> None:
        self.samples, self.features, self.steps = samples, features, steps
        self.offsets = tf.constant(offsets, tf.int64)

    @classmethod
    def _read(cls, cache: WaveformCache, margin: int) -> MemorySource:
        with h5py.File(cache.path, "r") as f:
            samples, features = f["samples"], f["global_features"]
            n = len(samples)
            buffer = _aligned_empty(n + 2 * margin, np.int16)
            buffer[:margin], buffer[margin + n:] = 0, 0
            step = 1 << 24
            for start in range(0, n, step):  # blocks: no second full-size copy
                stop = min(start + step, n)
                samples.read_direct(buffer, np.s_[start:stop], np.s_[margin + start:margin + stop])
            with tf.device("/cpu:0"):
                flat = tf.experimental.dlpack.from_dlpack(buffer.__dlpack__())
                return cls(flat, tf.constant(features[()]), cache.offsets + margin, cache.steps)

    @classmethod
    def of(cls, cache: WaveformCache | JoinedCache, margin: int = 0) -> MemorySource:
        if isinstance(cache, JoinedCache):
            first, second = cls.of(cache.first, margin), cls.of(cache.second, margin)
            with tf.device("/cpu:0"):
                return cls(tf.concat([first.samples, second.samples], 0),
                           tf.concat([first.features, second.features], 0),
                           np.concatenate([first.offsets.numpy(), second.offsets.numpy() + int(first.samples.shape[0])]),
                           cache.steps)
        st = cache.path.stat()
        key = (str(cache.path.resolve()), st.st_size, st.st_mtime_ns, margin)
        source = cls._loaded.get(key)
        if source is None:
            source = cls._loaded[key] = cls._read(cache, margin)
        return source


class RecordSource:
    """Clips streamed from the cache's TFRecord shards (written on first use when missing)."""

    def __init__(self, cache: WaveformCache) -> None:
        self.shards = tfrecords.write_records(cache.path)  # written by `prepare`, else now
        self.steps = self.shards.steps

    def stream(self, member: tf.Variable, seed: int) -> tf.data.Dataset:
        """Endless (row, record) pairs of the member rows, reshuffled on every pass over the shards."""
        files = tf.data.Dataset.from_tensor_slices(list(self.shards.files))
        files = files.shuffle(len(self.shards.files), seed=seed, reshuffle_each_iteration=True)
        records = files.interleave(tf.data.TFRecordDataset, cycle_length=min(8, len(self.shards.files)),
                                   num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        buffer = max(2, int(SHUFFLE_BYTES / max(1.0, self.shards.record_bytes)))
        records = records.shuffle(buffer, seed=seed + 1, reshuffle_each_iteration=True)
        pairs = records.map(lambda r: (tfrecords.parse_rows(r), r))
        return pairs.filter(lambda row, _: tf.gather(member, row)).repeat()

    def crop(self, record: tf.Tensor, crop: tf.Tensor, position: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """A record's crop (int16, zero-padded to ``crop`` samples) at ``position`` and its global features."""
        start, size, before = crop_window(tfrecords.clip_length(record, self.steps), crop, position)
        pcm = tfrecords.parse_samples(record, self.steps, start, size)  # copies the crop's bytes only
        return tf.pad(pcm, [[before, crop - size - before]]), tfrecords.parse_features(record, self.steps)


def _aligned_empty(n: int, dtype: type) -> np.ndarray:
    """Uninitialised array whose data starts on a 64-byte boundary (TensorFlow's alignment)."""
    itemsize = np.dtype(dtype).itemsize
    raw = np.empty(n * itemsize + 64, np.uint8)
    start = -raw.ctypes.data % 64
    return raw[start:start + n * itemsize].view(dtype)


class GraphTrainInput(TrainInput):
    """:class:`TrainInput` with batches made in-graph (see the module doc); needs a cache file.

    ``mixup_prob`` and ``set_active`` write tf.Variables that every batch reads, so they take effect
    for the batches made after the call, as in the numpy pipeline (a continuous dataset takes its
    mixup probabilities from its :class:`~freesound_tf.data.pipeline.EpochPlan` instead). ``source``:
    "memory", "records", or None to choose by ``pipeline.graph_memory_fraction``. ``steps_per_epoch`` > 0
    fixes the epoch length, the slots drawn with replacement (seed 001's fixed-size epochs).
    """

    continuous = True

    def __init__(
        self,
        cache: WaveformCache,
        labels: np.ndarray,
        config: PipelineConfig,
        sample_rate: int,
        indices: np.ndarray | None = None,
        inputs: Sequence[str] = ALL_INPUTS,
        mixup_prob: float = 0.0,
        augment: AugmentConfig | None = None,
        source: str | None = None,
        steps_per_epoch: int = 0,
    ) -> None:
        why = python_only(config, augment or AugmentConfig())
        if why:
            raise ConfigError(f"pipeline.loader = 'graph' cannot run {why}; use loader 'auto' or 'python'")
        with tf.init_scope(), tf.device("/cpu:0"):  # read by the input pipeline on the host
            self._mixup = tf.Variable(0.0, trainable=False, dtype=tf.float32, name="mixup_prob")
            self._active = tf.Variable(np.zeros(0, np.int64), shape=tf.TensorShape([None]), trainable=False,
                                       name="active_rows")
            self._member = tf.Variable(np.zeros(len(cache.lengths), bool), trainable=False, name="active_mask")
        super().__init__(cache, labels, config, sample_rate, indices, inputs, mixup_prob, augment, steps_per_epoch)
        self.set_active(None)
        if source is None:
            source = "memory" if fits_in_memory(cache, config) else "records"
        if source not in ("memory", "records"):
            raise ValueError(f"GraphTrainInput: source must be 'memory' or 'records', got {source!r}")
        if source == "records" and isinstance(cache, JoinedCache):
            raise ConfigError(f"{cache.second.path}: clips joined from two caches have no TFRecords; read them "
                              "from memory (source 'memory') or set pipeline.loader = 'python'")
        self.source = MemorySource.of(cache, self._longest_crop()) if source == "memory" else RecordSource(cache)
        self.spec = MixupSpec.from_config(config)
        # A fixed crop length gives every batch one shape: XLA fuses cropping, scaling and mixing into one pass.
        fixed = self.length_range is None
        self._memory_waves = tf.function(memory_waves, jit_compile=fixed, autograph=False)
        self._mixed_waves = tf.function(mixed_waves, jit_compile=fixed, autograph=False)
        with tf.device("/cpu:0"):  # captured by the dataset functions, not copied into them
            self._lengths = tf.constant(cache.lengths, tf.int64)
            self._length_feature = tf.constant(cache.length_feature, tf.float32)[:, None]
            self._labels = tf.constant(self.labels)

    @property
    def mixup_prob(self) -> float:
        return float(self._mixup.numpy())

    @mixup_prob.setter
    def mixup_prob(self, value: float) -> None:
        self._mixup.assign(value)

    def set_active(self, rows: np.ndarray | None) -> None:
        super().set_active(rows)
        self._active.assign(self.active)
        member = np.zeros(self._member.shape[0], bool)
        member[self.active] = True
        self._member.assign(member)

    def dataset(self, shards: int = 1, shard: int = 0, replicas: int = 1,
                epochs: EpochPlan | None = None) -> tf.data.Dataset:
        """One epoch (see :meth:`TrainInput.dataset`); worker ``shard`` of ``shards`` keeps every shards-th batch.

        With ``epochs``: endless, the epochs of the plan back to back (fit it with ``steps_per_epoch =
        len(self) // replicas``); each epoch is what a new iteration of the one-epoch dataset would give,
        its batches mixed up with the plan's probability for that epoch (``mixup_prob`` is not read).
        ``set_active`` then acts on the batches made after the call: use one-epoch datasets for
        per-epoch clip selection."""
        cfg = self.config
        n_batches = len(self) // replicas * replicas
        if n_batches == 0:
            raise ValueError(f"TrainInput: {len(self.indices)} clips make no full batch of {cfg.batch_size} "
                             f"for each of {replicas} replicas; lower pipeline.batch_size or add clips")
        batch = cfg.batch_size if self.drop_remainder else len(self.indices)
        seeds = tf.data.Dataset.random(seed=cfg.seed + shard, rerandomize_each_iteration=True)
        if isinstance(self.source, RecordSource):
            batches = self._record_crops(batch, n_batches, shards, shard, endless=epochs is not None)
            plan = self._record_plan
        else:
            batches, plan = self._rows(batch, n_batches).shard(shards, shard), self._plan
            if epochs is not None:
                batches = batches.repeat()  # each pass a new shuffled order, as a new iteration gives
        inputs = tf.data.Dataset.zip(batches, seeds).enumerate()
        per_worker = len(range(shard, n_batches, shards))
        schedule = None if epochs is None else tf.constant(epochs.mixup, tf.float32)

        def make_batch(j: tf.Tensor, pair: tuple) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
            # Plan and batch in one function: a plan depends on its batch's seed alone, so batches run in parallel.
            if schedule is None:
                mixup_prob = self._mixup.read_value()
            else:  # this worker's j-th batch belongs to epoch first + j // per_worker
                mixup_prob = tf.gather(schedule, tf.minimum(epochs.first + j // per_worker, len(epochs.mixup) - 1))
            return self._batch(plan(*pair, mixup_prob))

        ds = inputs.map(make_batch, num_parallel_calls=tf.data.AUTOTUNE)
        if epochs is None:
            ds = ds.apply(tf.data.experimental.assert_cardinality(per_worker))
        options = tf.data.Options()
        # tf.data's graph rewrites serialize the dataset, which copies the captured samples tensor.
        options.experimental_optimization.apply_default_optimizations = False
        if epochs is not None:
            # Deleting an endless iterator while tf.data's autotuner sleeps waits for it to wake (TF 2.20:
            # 6 s at the end of a 20 s fit from memory); AUTOTUNE then means tf.data's fixed defaults.
            options.autotune.enabled = False
        return ds.prefetch(tf.data.AUTOTUNE).with_options(options)

    def _rows(self, batch: int, n_batches: int) -> tf.data.Dataset:
        """Batches of cache rows: the epoch's shuffled slots (or slots drawn with replacement) -> active rows."""
        seed, n_slots = self.config.seed, len(self.indices)
        if self.steps_per_epoch:
            order = tf.data.Dataset.random(seed=seed + 1, rerandomize_each_iteration=True).map(
                lambda v: tf.math.floormod(v, n_slots))
        else:
            order = tf.data.Dataset.from_tensor_slices(np.arange(n_slots)).shuffle(
                n_slots, seed=seed, reshuffle_each_iteration=True)

        def rows(slots: tf.Tensor) -> tf.Tensor:
            active = self._active.read_value()
            return tf.gather(active, tf.math.floormod(slots, tf.size(active, tf.int64)))

        return order.batch(batch, drop_remainder=True).take(n_batches).map(rows)

    def _record_crops(self, batch: int, n_batches: int, shards: int, shard: int, endless: bool) -> tf.data.Dataset:
        """Batches of (rows, int16 crops, global features) cut from the record stream, this worker's batches only:
        the ``n_batches`` of one epoch, or (``endless``) all of them.

        Each record is cropped as it arrives (only crops are batched); its offset comes from a per-record
        seed, the crop length from a per-batch draw shared by the batch's records."""
        seed = self.config.seed
        stream = self.source.stream(self._member, seed)
        if not endless:
            stream = stream.take(n_batches * batch)
        if shards > 1:  # every worker reads the same stream and keeps its batches
            stream = stream.enumerate().filter(lambda j, _: (j // batch) % shards == shard).map(lambda _, pair: pair)
        # Streams of their own (other seeds than the batches' mixup seeds), one per worker.
        positions = tf.data.Dataset.random(seed=seed + shard + 104729, rerandomize_each_iteration=True).map(
            lambda s: tf.random.stateless_uniform((), _seed(s, 1), dtype=tf.float64))
        lengths = tf.data.Dataset.random(seed=seed + shard + 7919, rerandomize_each_iteration=True).flat_map(
            lambda s: tf.data.Dataset.from_tensors(self._crop_length(s)).repeat(batch))

        def crop(pair: tuple[tf.Tensor, tf.Tensor], position: tf.Tensor, length: tf.Tensor):
            row, record = pair
            return (row, *self.source.crop(record, length, position))

        crops = tf.data.Dataset.zip(stream, positions, lengths).map(crop, num_parallel_calls=tf.data.AUTOTUNE)
        return crops.batch(batch, drop_remainder=True)

    def _longest_crop(self) -> int:
        return self.crop_len if self.length_range is None else int(self.length_range[1])

    def _crop_length(self, seed: tf.Tensor) -> tf.Tensor:
        """The batch's crop length: ``crop_seconds``, or uniform in ``length_range`` (seed 002)."""
        if self.length_range is None:
            return tf.constant(self.crop_len, tf.int64)
        low, high = self.length_range
        return tf.random.stateless_uniform((), _seed(seed, 0), low, high + 1, dtype=tf.int64)

    def _plan(self, rows: tf.Tensor, seed: tf.Tensor, mixup_prob: tf.Tensor) -> dict[str, tf.Tensor]:
        """Everything random about one batch of the memory source, its labels and side inputs (module doc)."""
        n = tf.size(rows)
        crop = self._crop_length(seed)
        position = tf.random.stateless_uniform((n,), _seed(seed, 1), dtype=tf.float64)
        start, size, before = crop_window(tf.gather(self._lengths, rows), crop, position)
        # Window i starts `before` samples ahead of its clip's first sample (into the margin or the clip before).
        first = tf.gather(self.source.offsets, rows) + start - before
        plan = {"first": first, "before": before, "size": size, "crop": crop}
        return self._mix_plan(plan, rows, tf.gather(self.source.features, rows), seed, mixup_prob)

    def _record_plan(self, batch: tuple[tf.Tensor, tf.Tensor, tf.Tensor], seed: tf.Tensor,
                     mixup_prob: tf.Tensor) -> dict[str, tf.Tensor]:
        """The same for a batch of records, whose crops are cut and zero-padded already: only the mixup is planned."""
        rows, crops, features = batch
        return self._mix_plan({"crops": crops}, rows, features, seed, mixup_prob)

    def _mix_plan(self, plan: dict[str, tf.Tensor], rows: tf.Tensor, features: tf.Tensor,
                  seed: tf.Tensor, mixup_prob: tf.Tensor) -> dict[str, tf.Tensor]:
        """Adds the mixup partners and weights, the mixed labels and the side inputs to a batch's plan."""
        partner, weight = draw_mixup(tf.size(rows), seed, mixup_prob, self.spec)
        plan = {**plan, "weight": weight, "partner": partner}
        side = {}
        if "global_features" in self.inputs:
            side["global_features"] = features
        if "length" in self.inputs:
            side["length"] = tf.gather(self._length_feature, rows)
        if self.spec.side_inputs == "blend":
            side = {k: mix_rows(v, partner, weight) for k, v in side.items()}
        plan["labels"] = mix_labels(tf.gather(self._labels, rows), partner, weight, self.spec.label_rule)
        return {**plan, **side}

    def _batch(self, plan: dict[str, tf.Tensor]) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        weight, partner = plan["weight"], plan["partner"]
        if isinstance(self.source, MemorySource):
            fixed = self.length_range is None
            wave = self._memory_waves(self.source.samples, plan["first"], plan["before"], plan["size"], weight,
                                      partner, self.crop_len if fixed else plan["crop"], fixed)
        else:
            wave = self._mixed_waves(plan["crops"], None, weight, partner)
        if self.length_range is None:
            wave = tf.ensure_shape(wave, (None, self.crop_len))  # static shapes for XLA and TPUs
        features = {name: wave if name == "waveform" else plan[name] for name in self.inputs}
        return features, plan["labels"]


def python_only(config: PipelineConfig, augment: AugmentConfig) -> str:
    """Why a recipe needs the numpy pipeline (per-clip Python augmentation), or "" when the graph one can run it."""
    if augment.p_effects > 0:
        return "augment.p_effects > 0 (audio effects run in Python)"
    for name in ("p_shuffle_chunks", "short_clip_masked_copy"):
        if getattr(augment, name):
            return f"augment.{name} (a per-clip Python augmentation)"
    if config.crop_mode != "window":
        return f"pipeline.crop_mode = {config.crop_mode!r}"
    return ""


def write_stream_records(cache_path: Path, config: PipelineConfig, augment: AugmentConfig) -> bool:
    """Write the TFRecord shards of a cache the in-graph loader will stream (too big for memory); True if it will."""
    if config.loader == "python" or (config.loader == "auto" and python_only(config, augment)):
        return False
    with WaveformCache(cache_path) as cache:
        if fits_in_memory(cache, config):
            return False
    tfrecords.write_records(cache_path)
    return True


def make_train_input(
    cache: WaveformCache,
    labels: np.ndarray,
    config: PipelineConfig,
    sample_rate: int,
    indices: np.ndarray | None = None,
    inputs: Sequence[str] = ALL_INPUTS,
    mixup_prob: float = 0.0,
    augment: AugmentConfig | None = None,
    steps_per_epoch: int = 0,
) -> TrainInput:
    """The training input ``pipeline.loader`` asks for: "auto" takes the in-graph one unless a per-clip
    Python augmentation is on, "graph" insists on it, "python" takes the numpy one."""
    augment = augment or AugmentConfig()
    loader = config.loader
    if loader == "auto":
        joined_on_disk = isinstance(cache, JoinedCache) and not fits_in_memory(cache, config)
        loader = "python" if python_only(config, augment) or joined_on_disk else "graph"
    cls = GraphTrainInput if loader == "graph" else TrainInput
    return cls(cache, labels, config, sample_rate, indices, inputs=inputs, mixup_prob=mixup_prob, augment=augment,
               steps_per_epoch=steps_per_epoch)


def python_ops(dataset: tf.data.Dataset) -> set[str]:
    """Ops of the dataset's graph (functions included) that call back into Python: empty for a TPU-ready one.
    Serializing the graph copies the tensors it captures (a memory source's samples): for small caches."""
    graph = tf.compat.v1.GraphDef.FromString(dataset._as_serialized_graph().numpy())  # noqa: SLF001
    nodes = list(graph.node) + [n for fn in graph.library.function for n in fn.node_def]
    return {n.op for n in nodes} & PY_OPS

