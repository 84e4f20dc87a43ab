"""TFLite: convert an exported SavedModel, and make members convertible to TFLite builtins.

The variable-length export does not convert to TFLite builtins: kapre's ``STFT`` yields complex64
tensors (``tf.Transpose`` on complex64 has no builtin kernel, and the convolution after it loses
its channel count), the global-feature window bookkeeping and crop offsets are float64 math
on the run-time length (``tf.Floor`` / ``tf.Mul`` / ``tf.RealDiv`` on float64), and a GRU's
tensor lists need a static batch size (``tf.TensorListReserve``).

A fixed-length export (``export_run(..., fixed_samples=N)``) avoids all of them: every length
dependent number becomes a constant, the batch is 1, and each fold model is rebuilt with
:class:`DftPowerSpectrum` in place of kapre's STFT + power, a real DFT done as one matmul on
precomputed frames (the idea of kapre's ``STFTTflite``, whose rank-4 x rank-2 batched matmul
crashes TensorFlow 2.20's oneDNN CPU kernel). The rebuilt models share the trained layers, so
no weight is copied or changed.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

_UNSUPPORTED_OP = re.compile(r"'(tf\.\w+)' op|operation '(tf\.\w+)'")
_DETAIL_OP = re.compile(r"^\s*(tf\.\w+)\((.*?)\) ->", re.MULTILINE)


class TFLiteConversionError(ValueError):
    """The SavedModel uses ops TFLite's builtin kernels lack."""


@keras.saving.register_keras_serializable(package="freesound_tf")
class DftPowerSpectrum(keras.layers.Layer):
    """(batch, samples, 1) -> (batch, frames, n_fft // 2 + 1, 1) |STFT| ** power with TFLite builtins only.

    Same numbers as kapre's ``STFT(pad_end=True)`` (periodic Hann window, frames = ceil(samples /
    hop), end zero-padded) followed by ``SpectralPower``: frames are gathered by constant indices
    and transformed by one real matmul with [cos | -sin]. Needs a length known when traced.
    """

    def __init__(self, n_fft: int, hop_length: int, power: float = 2.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.n_fft, self.hop_length, self.power = int(n_fft), int(hop_length), float(power)

    def call(self, x):
        samples = x.shape[1]
        if samples is None:
            raise ValueError("DftPowerSpectrum: the waveform length must be known when the graph is built; "
                             "export with a fixed length")
        frames = -(-samples // self.hop_length)
        padded = (frames - 1) * self.hop_length + self.n_fft
        x = tf.pad(x[..., 0], [[0, 0], [0, padded - samples]])
        index = np.arange(frames)[:, None] * self.hop_length + np.arange(self.n_fft)
        n = np.arange(self.n_fft)
        window = 0.5 - 0.5 * np.cos(2 * np.pi * n / self.n_fft)  # tf.signal.hann_window(periodic=True)
        framed = tf.reshape(tf.gather(x, tf.constant(index, tf.int32), axis=1), (-1, self.n_fft))
        bins = self.n_fft // 2 + 1
        angle = 2 * np.pi * np.outer(n, np.arange(bins)) / self.n_fft
        basis = np.concatenate([np.cos(angle), -np.sin(angle)], axis=1) * window[:, None]
        spectrum = tf.matmul(framed, tf.constant(basis, tf.float32))  # (batch * frames, 2 * bins)
        energy = spectrum[:, :bins] ** 2 + spectrum[:, bins:] ** 2
        out = energy if self.power == 2.0 else tf.sqrt(energy)
        return tf.reshape(out, (-1, frames, bins, 1))

    def compute_output_shape(self, input_shape):
        samples = input_shape[1]
        frames = None if samples is None else -(-samples // self.hop_length)
        return (input_shape[0], frames, self.n_fft // 2 + 1, 1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "n_fft": self.n_fft, "hop_length": self.hop_length, "power": self.power}


def tflite_compatible_model(model: keras.Model) -> keras.Model:
    """``model`` with its STFT + spectral power replaced by :class:`DftPowerSpectrum`; all other
    layers are the trained ones, shared, not copied."""
    import kapre

    from freesound_tf.layers import SpectralPower

    stft_layers = [layer for layer in _all_layers(model) if isinstance(layer, kapre.STFT)]
    power_layers = [layer for layer in _all_layers(model) if isinstance(layer, SpectralPower)]
    if len(stft_layers) != 1 or len(power_layers) != 1:
        raise ValueError(f"{model.name}: expected one kapre STFT followed by SpectralPower in the frontend; "
                         "this architecture has no TFLite-compatible rebuild")
    stft, power = stft_layers[0], power_layers[0]
    if stft.win_length != stft.n_fft or stft.pad_begin or not stft.pad_end or stft.window_name is not None:
        raise ValueError(f"{model.name}: only the frontend's own STFT settings (Hann, win = n_fft, pad_end) "
                         "have a TFLite-compatible rebuild")

    def swap(layer):
        if layer is stft:
            return DftPowerSpectrum(stft.n_fft, stft.hop_length, power.power, name="dft_power", dtype="float32")
        if layer is power:
            return keras.layers.Identity(name="spectral_power_done", dtype="float32")
        return layer

    return keras.models.clone_model(model, clone_function=swap, recursive=True)


def _all_layers(model: keras.Model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def convert_tflite(saved_model_dir: str | Path, out_path: str | Path, select_tf_ops: bool = False) -> Path:
    """Convert the exported SavedModel's ``serving_default`` to a ``.tflite`` file at ``out_path``.

    Builtin kernels only, unless ``select_tf_ops`` (then the file needs TensorFlow's Flex delegate,
    e.g. the ``tensorflow`` pip package's interpreter). Unsupported ops raise
    :class:`TFLiteConversionError` naming them and the ways out.
    """
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir), signature_keys=["serving_default"])
    if select_tf_ops:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
        converter._experimental_lower_tensor_list_ops = False  # keep GRU tensor lists as Flex ops
    try:
        flatbuffer = converter.convert()
    except Exception as err:  # the converter raises ConverterError or plain Exceptions by version
        raise TFLiteConversionError(
            f"{saved_model_dir}: TFLite builtins lack {', '.join(unsupported_ops(str(err))) or 'some ops'}; "
            "re-export with a fixed length (`freesound-tf export --tflite-samples N`, kapre-style real-DFT STFT, "
            "batch 1) or convert with --tflite-select-ops (needs the TF Select / Flex delegate)") from err
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_bytes(flatbuffer)
    return out_path


def unsupported_ops(message: str) -> list[str]:
    """Op names a conversion error reports, with the unusual operand types (complex, float64) it lists."""
    names = {a or b for a, b in _UNSUPPORTED_OP.findall(message)}
    types: dict[str, set[str]] = {}
    for op, operands in _DETAIL_OP.findall(message):
        names.add(op)
        types.setdefault(op, set()).update(re.findall(r"complex<f32>|f64", operands))
    return [f"{op} on {'/'.join(sorted(types[op]))}" if types.get(op) else op for op in sorted(names)]
