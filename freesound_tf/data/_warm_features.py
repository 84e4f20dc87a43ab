"""Imported by the cache build's forkserver: loads (or compiles) the numba kernels of ``global_features``
for 16-bit and float clips once, so every worker forked from the server starts with them."""
import numpy as np

from freesound_tf.data.features import global_features

global_features(np.arange(-128, 128, dtype=np.float32) / 32768)  # 16-bit PCM
global_features(np.linspace(-0.5, 0.5, 256, dtype=np.float32))  # float
