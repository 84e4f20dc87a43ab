"""Requests as TF Serving passes them to the exported signatures: REST row and columnar JSON, gRPC
PredictRequest protos, and the input checks of issue 12 (rank, NaN/Inf, empty batch, lengths).

TF Serving itself is not installed here; the REST helpers below apply its documented JSON <-> tensor
rules (tensorflow_serving/util/json_tensor.cc): row format stacks ``instances`` into a batch and
needs every output batch-major ("inconsistent batch size" otherwise); columnar passes ``inputs``
as whole tensors.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from freesound_tf.training.run_folder import load_run
from tests.export.helpers import random_clips


def _inputs(signature, named: dict) -> dict[str, tf.Tensor]:
    specs = signature.structured_input_signature[1]
    if set(named) != set(specs):
        raise ValueError(f"input size does not match signature: {sorted(named)} != {sorted(specs)}")
    return {k: tf.constant(np.asarray(v), specs[k].dtype) for k, v in named.items()}


def rest_row(signature, body: str) -> str:
    """TF Serving's REST Predict in the row ("instances") format."""
    request = json.loads(body)
    instances = request["instances"]
    specs = signature.structured_input_signature[1]
    rows = [i if isinstance(i, dict) else {next(iter(specs)): i} for i in instances]
    outputs = signature(**_inputs(signature, {k: [row[k] for row in rows] for k in rows[0]}))
    batch = len(instances)
    for name, value in outputs.items():
        if value.shape.rank == 0 or value.shape[0] != batch:
            raise ValueError(f"Tensor name: {name} has inconsistent batch size: "
                             f"{value.shape[0] if value.shape.rank else 0} expecting: {batch}")
    values = {k: v.numpy().tolist() for k, v in outputs.items()}
    predictions = (values[next(iter(values))] if len(values) == 1
                   else [{k: v[i] for k, v in values.items()} for i in range(batch)])
    return json.dumps({"predictions": predictions})


def rest_columnar(signature, body: str) -> str:
    """TF Serving's REST Predict in the columnar ("inputs") format."""
    request = json.loads(body)
    specs = signature.structured_input_signature[1]
    named = request["inputs"] if isinstance(request["inputs"], dict) else {next(iter(specs)): request["inputs"]}
    values = {k: v.numpy().tolist() for k, v in signature(**_inputs(signature, named)).items()}
    return json.dumps({"outputs": values[next(iter(values))] if len(values) == 1 else values})


@pytest.fixture(scope="module")
def signatures(exports):
    return tf.saved_model.load(str(exports["mean"])).signatures


@pytest.fixture(scope="module")
def n_classes(tiny_runs) -> int:
    return len(load_run(tiny_runs[0]).classes)


def test_rest_row_format_scores_each_instance(signatures, n_classes) -> None:
    serve = signatures["serving_default"]
    clips = random_clips((9000,) * n_classes, seed=2)  # batch == class count: once mistaken for labels
    body = json.dumps({"signature_name": "serving_default", "instances": [c.tolist() for c in clips]})
    predictions = json.loads(rest_row(serve, body))["predictions"]
    assert len(predictions) == n_classes and all(len(row) == n_classes for row in predictions)
    direct = serve(waveform=tf.constant(np.stack(clips)))["scores"].numpy()
    np.testing.assert_allclose(predictions, direct, atol=1e-6)


def test_rest_padded_batch_in_row_and_columnar_formats(signatures) -> None:
    padded = signatures["padded"]
    clips = random_clips((4000, 9000, 12000), seed=4)
    lengths = [len(c) for c in clips]
    batch = np.zeros((3, max(lengths)), np.float32)
    for row, clip in enumerate(clips):
        batch[row, :len(clip)] = clip
    rows = json.dumps({"signature_name": "padded", "instances": [
        {"waveform": w.tolist(), "lengths": n} for w, n in zip(batch, lengths)]})
    columns = json.dumps({"signature_name": "padded", "inputs": {"waveform": batch.tolist(), "lengths": lengths}})
    by_row = np.array(json.loads(rest_row(padded, rows))["predictions"])
    by_column = np.array(json.loads(rest_columnar(padded, columns))["outputs"])
    alone = np.concatenate([signatures["serving_default"](waveform=tf.constant(c[None]))["scores"].numpy()
                            for c in clips])
    np.testing.assert_allclose(by_row, alone, atol=1e-5)
    np.testing.assert_allclose(by_column, alone, atol=1e-5)


def test_grpc_predict_requests_round_trip(signatures, tiny_runs, n_classes) -> None:
    from tensorflow_serving.apis import predict_pb2

    def call(request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        """What the server does: parse, run the named signature on the decoded tensors, encode."""
        parsed = predict_pb2.PredictRequest.FromString(request.SerializeToString())
        signature = signatures[parsed.model_spec.signature_name]
        inputs = {k: tf.make_ndarray(v) for k, v in parsed.inputs.items()}
        response = predict_pb2.PredictResponse()
        for name, value in signature(**_inputs(signature, inputs)).items():
            response.outputs[name].CopyFrom(tf.make_tensor_proto(value.numpy()))
        return predict_pb2.PredictResponse.FromString(response.SerializeToString())

    clips = random_clips((12000, 7000), seed=3)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "freesound"
    request.model_spec.signature_name = "padded"
    batch = np.stack([clips[0], np.pad(clips[1], (0, 5000))])
    request.inputs["waveform"].CopyFrom(tf.make_tensor_proto(batch))
    request.inputs["lengths"].CopyFrom(tf.make_tensor_proto(np.array([12000, 7000], np.int32)))
    response = call(request)
    assert [d.size for d in response.outputs["scores"].tensor_shape.dim] == [2, n_classes]
    alone = np.concatenate([signatures["serving_default"](waveform=tf.constant(c[None]))["scores"].numpy()
                            for c in clips])
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["scores"]), alone, atol=1e-5)

    metadata = predict_pb2.PredictRequest()
    metadata.model_spec.signature_name = "metadata"
    outputs = call(metadata).outputs
    assert tf.make_ndarray(outputs["labels"]).astype(str).tolist() == list(load_run(tiny_runs[0]).classes.names)
    assert int(tf.make_ndarray(outputs["sample_rate"])) == 8000 and bool(tf.make_ndarray(outputs["multilabel"]))


def test_empty_batch_returns_no_rows(signatures, n_classes) -> None:
    out = signatures["serving_default"](waveform=tf.zeros((0, 8000)))["scores"]
    assert out.shape == (0, n_classes)
    out = signatures["padded"](waveform=tf.zeros((0, 8000)), lengths=tf.zeros((0,), tf.int32))["scores"]
    assert out.shape == (0, n_classes)


@pytest.mark.parametrize("shape", [(8000,), (1, 2, 8000)])
def test_wrong_rank_is_named(signatures, shape) -> None:
    """A flat row-format request (one number per instance) arrives as rank 1."""
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"waveform .* not compatible with expected shape \[\?,\?\]"):
        signatures["serving_default"](waveform=tf.zeros(shape))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_audio_is_rejected(signatures, bad) -> None:
    clip = random_clips((8000,))[0]
    clip[100] = bad
    with pytest.raises(tf.errors.InvalidArgumentError, match="waveform: NaN or Inf samples"):
        signatures["serving_default"](waveform=tf.constant(clip[None]))
    # NaN in the padding past a row's length is ignored: those samples are not part of the clip.
    padded = np.stack([clip, clip])
    scores = signatures["padded"](waveform=tf.constant(padded), lengths=tf.constant([100, 50]))["scores"]
    assert np.isfinite(scores.numpy()).all()


@pytest.mark.parametrize("lengths,message", [([8000], "one length per waveform row"),
                                             ([8000, 0], "at least 1 sample"),
                                             ([8000, 8001], "exceeds the waveform width")])
def test_bad_lengths_are_named(signatures, lengths, message) -> None:
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"lengths: .*{message}"):
        signatures["padded"](waveform=tf.zeros((2, 8000)), lengths=tf.constant(lengths, tf.int32))
