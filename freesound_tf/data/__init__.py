"""Data layer: Kaggle layouts, audio decoding, waveform cache, folds, demo set, tf.data pipeline."""
