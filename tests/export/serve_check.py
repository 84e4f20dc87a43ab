"""Run as a script: load exported SavedModels with TensorFlow alone and score the clips given.

usage: serve_check.py CLIPS.npz OUT.npz SAVED_MODEL...
writes scores_<k>_<clip> (one clip per call), padded_<k> (all clips in one zero-padded batch with
their lengths, in CLIPS.npz order) and labels_<k> (from the metadata signature).
"""
import sys

import numpy as np
import tensorflow as tf

clips_file, out_file, *models = sys.argv[1:]
clips = np.load(clips_file)
lengths = np.array([len(clips[name]) for name in clips.files], np.int32)
batch = np.zeros((len(lengths), lengths.max()), np.float32)
for row, name in enumerate(clips.files):
    batch[row, :lengths[row]] = clips[name]
out = {}
for k, path in enumerate(models):
    signatures = tf.saved_model.load(path).signatures
    serve = signatures["serving_default"]
    for name in clips.files:
        out[f"scores_{k}_{name}"] = serve(waveform=tf.constant(clips[name][None, :]))["scores"].numpy()
    out[f"padded_{k}"] = signatures["padded"](waveform=tf.constant(batch), lengths=tf.constant(lengths))["scores"].numpy()
    out[f"labels_{k}"] = signatures["metadata"]()["labels"].numpy().astype(str)
leaked = sorted(m for m in sys.modules if m.startswith(("freesound_tf", "kapre")))
assert not leaked, f"the served model needed library modules: {leaked}"
np.savez(out_file, **out)
