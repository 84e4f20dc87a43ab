"""A fixed PCA projection, fitted with scikit-learn on training features before training."""
from __future__ import annotations

import logging
from typing import Any

import keras
import numpy as np
from keras import ops

log = logging.getLogger(__name__)


@keras.saving.register_keras_serializable(package="freesound_tf")
class PCAProjection(keras.layers.Layer):
    """(b, features) -> (b, n_components): standardise each feature, project on the principal axes.

    Equals ``make_pipeline(StandardScaler(), PCA(k)).fit(train).transform(x)`` once :meth:`adapt`
    has seen ``train``. The output width is fixed when the model is built; when the training set
    supports fewer axes (k = min(n_components, samples, features)), the outputs past k are 0.
    Both weights are non-trainable and saved with the model: before ``adapt`` every output is 0.
    """

    def __init__(self, n_components: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if n_components < 1:
            raise ValueError(f"PCAProjection: n_components must be >= 1, got {n_components}")
        self.n_components = int(n_components)

    def build(self, input_shape) -> None:
        n_features = input_shape[-1]
        self.mean = self.add_weight(name="mean", shape=(n_features,), initializer="zeros", trainable=False)
        self.projection = self.add_weight(name="projection", shape=(n_features, self.n_components),
                                          initializer="zeros", trainable=False)

    def call(self, x):
        return ops.matmul(ops.cast(x, self.compute_dtype) - self.mean, self.projection)

    def adapt(self, features: np.ndarray) -> None:
        """Fit the standardisation and the principal axes on ``features`` (samples, features)."""
        from sklearn.decomposition import PCA
        from sklearn.preprocessing import StandardScaler

        features = np.asarray(features, np.float64)
        n_features = self.mean.shape[0]
        if features.ndim != 2 or features.shape[1] != n_features or not np.isfinite(features).all():
            raise ValueError(f"{self.name}.adapt: need finite features of shape (samples, {n_features}), "
                             f"got {features.shape}")
        k = min(self.n_components, *features.shape)
        scaler = StandardScaler().fit(features)
        pca = PCA(k, svd_solver="full").fit(scaler.transform(features))
        # ((x - mu) / s - m) @ C.T == (x - (mu + s m)) @ (C.T / s[:, None])
        projection = np.zeros((n_features, self.n_components))
        projection[:, :k] = pca.components_.T / scaler.scale_[:, None]
        self.mean.assign(scaler.mean_ + scaler.scale_ * pca.mean_)
        self.projection.assign(projection)
        log.info("%s: %d components explain %.1f %% of the variance of %d clips", self.name, k,
                 100 * pca.explained_variance_ratio_.sum(), len(features))

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.n_components)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "n_components": self.n_components}
