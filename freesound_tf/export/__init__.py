"""Export for serving: one TF Serving SavedModel that scores raw audio, and its TFLite conversion.

``export_run(run_dirs, out_dir, stack_dir=None, fixed_samples=None)`` writes ``out_dir/1`` (a
SavedModel whose ``serving_default`` maps ``waveform`` [batch, samples] to ``scores`` and
``labels``); ``convert_tflite(saved_model_dir, out_path)`` converts it. Everything the models
need (global statistics, length, TTA crops, fold and member averaging, the stacker) is in the graph.
"""
from freesound_tf.export.features_layer import GlobalFeatures, global_features_tf, length_feature_tf
from freesound_tf.export.serving import export_run
from freesound_tf.export.tflite import DftPowerSpectrum, TFLiteConversionError, convert_tflite

__all__ = ["DftPowerSpectrum", "GlobalFeatures", "TFLiteConversionError", "convert_tflite", "export_run",
           "global_features_tf", "length_feature_tf"]
