"""Waveform-only models: the global statistics and the length feature computed in the graph.

Library models take up to three inputs (``waveform``, ``global_features``, ``length``) because
the cache precomputes the side inputs. Wrapped here, ``model.predict(waveforms)`` works on raw
audio alone. The side inputs come from the samples given: pass audio already trimmed the way
the library trims (``freesound_tf.data.audio.trim_silence``), or use ``freesound_tf.load_run``,
which trims, crops and averages like the library.
"""
from __future__ import annotations

import keras

from freesound_tf.config import AudioConfig
from freesound_tf.export.features_layer import GlobalFeatures, LengthFeature


def waveform_only(model: keras.Model, audio: AudioConfig | None = None) -> keras.Model:
    """``model`` behind one ``waveform`` input; ``audio`` gives the rate, statistic rows and length norm."""
    audio = audio or AudioConfig()
    if not isinstance(model.input, dict) or "waveform" not in model.input:
        raise ValueError(f"{model.name}: expected a library model with a dict of inputs including 'waveform'")
    waveform = keras.Input(model.input["waveform"].shape[1:], name="waveform", dtype="float32")
    inputs = {"waveform": waveform}
    if "global_features" in model.input:
        steps = model.input["global_features"].shape[1]
        if steps != audio.global_steps:
            raise ValueError(f"{model.name}: takes {steps} global-feature rows, audio.global_steps is "
                             f"{audio.global_steps}; pass the recipe's AudioConfig")
        inputs["global_features"] = GlobalFeatures(steps, name="global_features")(waveform)
    if "length" in model.input:
        inputs["length"] = LengthFeature(audio.sample_rate, audio.length_norm_seconds, name="length")(waveform)
    return keras.Model(waveform, model({k: inputs[k] for k in model.input}), name=f"{model.name}_waveform_only")
