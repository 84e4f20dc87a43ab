"""Imported by the cache build's forkserver: loads (or compiles) the numba kernels a cache worker runs
(trim, quantization, ``global_features`` for 16-bit and float clips) once, so every worker forked from
the server starts with them."""
import numpy as np

from freesound_tf.data.audio import quantize_pcm16, trim_silence
from freesound_tf.data.features import global_features

for clip in (np.arange(-128, 128, dtype=np.float32) / 32768, np.linspace(-0.5, 0.5, 256, dtype=np.float32)):
    global_features(clip)  # 16-bit PCM, then float
    quantize_pcm16(trim_silence(clip, 60.0)[0])
