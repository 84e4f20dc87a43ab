"""Run as a script: load exported SavedModels with TensorFlow alone and score the clips given.

usage: serve_check.py CLIPS.npz OUT.npz SAVED_MODEL...   (writes scores_<k>_<clip> and labels_<k>)
"""
import sys

import numpy as np
import tensorflow as tf

clips_file, out_file, *models = sys.argv[1:]
clips = np.load(clips_file)
out = {}
for k, path in enumerate(models):
    serve = tf.saved_model.load(path).signatures["serving_default"]
    for name in clips.files:
        result = serve(waveform=tf.constant(clips[name][None, :]))
        out[f"scores_{k}_{name}"] = result["scores"].numpy()
        out[f"labels_{k}"] = result["labels"].numpy().astype(str)
leaked = sorted(m for m in sys.modules if m.startswith(("freesound_tf", "kapre")))
assert not leaked, f"the served model needed library modules: {leaked}"
np.savez(out_file, **out)
