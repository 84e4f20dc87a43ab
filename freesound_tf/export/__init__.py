"""Export for serving: one TF Serving SavedModel that scores raw audio, and its TFLite conversion.

``export_run(run_dirs, out_dir, stack_dir=None)`` writes the next version folder ``out_dir/<N>``
(a SavedModel whose ``serving_default`` maps ``waveform`` [batch, samples] to ``scores`` [batch,
classes]; ``padded`` adds ``lengths``; ``metadata`` gives the labels and sample rate);
``convert_tflite(saved_model_dir, out_path)`` converts a fixed-length export. Everything the models
need (trimming, global statistics, length, TTA crops, fold and member averaging, the stacker) is in
the graph.
"""
from freesound_tf.export.features_layer import GlobalFeatures, LengthFeature, global_features_tf, length_feature_tf
from freesound_tf.export.serving import export_run
from freesound_tf.export.tflite import DftPowerSpectrum, TFLiteConversionError, convert_tflite

__all__ = ["DftPowerSpectrum", "GlobalFeatures", "LengthFeature", "TFLiteConversionError", "convert_tflite",
           "export_run", "global_features_tf", "length_feature_tf"]
