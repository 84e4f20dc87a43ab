"""TFLite: the fixed-length export converts to builtins and matches; the variable one fails clearly."""
from __future__ import annotations

import kapre
import numpy as np
import pytest
import tensorflow as tf

from freesound_tf.config import FrontendConfig
from freesound_tf.export import DftPowerSpectrum, convert_tflite, export_run
from freesound_tf.export.tflite import unsupported_ops
from freesound_tf.layers import SpectralPower
from tests.export.helpers import library_scores, random_clips

FIXED = 6000  # shorter than the 1 s crop of the tiny runs: exercises the padded crops


@pytest.mark.parametrize("power", [2.0, 1.0])
def test_dft_power_spectrum_equals_kapre_stft_power(power: float) -> None:
    config = FrontendConfig(n_fft=256, hop_length=128)
    x = np.random.default_rng(0).standard_normal((2, 1000, 1)).astype(np.float32)
    stft = kapre.STFT(n_fft=config.n_fft, hop_length=config.hop_length, pad_end=True,
                      input_data_format="channels_last", output_data_format="channels_last")
    expected = SpectralPower(power)(stft(x)).numpy()
    got = DftPowerSpectrum(config.n_fft, config.hop_length, power)(x).numpy()
    assert got.shape == expected.shape == (2, 8, 129, 1)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3 * expected.max())


def test_fixed_length_export_converts_to_builtins_and_matches(tiny_runs, tmp_path) -> None:
    saved_model = export_run(tiny_runs, tmp_path / "fixed", fixed_samples=FIXED)  # includes the GRU member
    tflite_file = convert_tflite(saved_model, tmp_path / "model.tflite")
    clip = random_clips((FIXED,), seed=7)[0]
    runner = tf.lite.Interpreter(model_path=str(tflite_file)).get_signature_runner("serving_default")
    out = runner(waveform=clip[None])
    assert set(out) == {"scores"} and out["scores"].shape == (1, 10)
    expected = np.mean([library_scores(run, [clip]) for run in tiny_runs], axis=0)
    np.testing.assert_allclose(out["scores"], expected, atol=1e-4)


def test_unsupported_ops_are_read_from_converter_messages() -> None:
    message = ("error: 'tf.Floor' op is neither a custom op nor a flex op\nDetails:\n"
               "\ttf.Floor(tensor<f64>) -> (tensor<f64>) : {device = \"\"}\n"
               "\ttf.Transpose(tensor<?x?x?x129xcomplex<f32>>, tensor<4xi32>) -> (tensor<?x?x129x?xcomplex<f32>>)\n"
               "\ttf.Conv2D(tensor<?x?x32x?xf32>, tensor<3x3x1x4xf32>) -> (tensor<?x?x32x4xf32>) : {}\n"
               "error: failed to legalize operation 'tf.TensorListGetItem' that was explicitly marked illegal\n")
    assert unsupported_ops(message) == ["tf.Conv2D", "tf.Floor on f64", "tf.TensorListGetItem",
                                        "tf.Transpose on complex<f32>"]
