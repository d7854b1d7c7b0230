"""The manifest's optional canary: strict validation, unchanged bytes without one, and the device running
it on the staged .tflite file before the swap (refusing with canary-failed and keeping its model)."""

from __future__ import annotations

import dataclasses

import msgpack
import numpy as np
import pytest

from codec.arrays import pack
from codec.canary import MAX_CANARY_BYTES, Canary
from codec.errors import UpdateError
from codec.manifest import SIGNATURE_DOMAIN, read_manifest
from codec.quantise import dense_record
from codec.status_message import read_status
from codec.update_file import updated_model_file
from device_client.store import FileModelStore
from publisher.errors import ReleaseInputError
from publisher.release.build import full_release, update_release
from publisher.tflite.canary import model_canary, update_canary
from simulator.testbed import synthetic
from simulator.testbed.devices import install_model
from simulator.testbed.synthetic_tflite import INPUTS, make_tflite, reference_outputs

MODEL = "digits"

X = np.random.default_rng(7).standard_normal((3, INPUTS)).astype(np.float32)


def _array(values: np.ndarray, dtype: str = "f32") -> dict:
    """An array map in canonical (sorted) key order."""
    return dict(sorted(pack(values, dtype).to_msgpack().items()))


def _canary_map(**changes: object) -> dict:
    return {"atol": 1e-5, "inputs": _array(X), "outputs": _array(np.zeros((3, 4))), **changes}


def _sign(fields: dict, key) -> bytes:
    signed = msgpack.packb(dict(sorted(fields.items())), use_bin_type=True)
    return msgpack.packb({"signed": signed, "signature": key.sign(SIGNATURE_DOMAIN + signed)})


def test_a_manifest_without_canary_has_no_canary_key(signing) -> None:
    release = synthetic.make_full_release(synthetic.random_model_file(1), MODEL, 1, signing[0])
    assert release.manifest.canary is None and b"canary" not in release.envelope


def test_a_canary_round_trips_through_the_signed_manifest(signing) -> None:
    canary = Canary.from_arrays(X, np.ones((3, 4)), 1e-4)
    release = synthetic.make_full_release(synthetic.random_model_file(1), MODEL, 1, signing[0], canary=canary)
    read = read_manifest(release.envelope, {signing[0].verify_key.key_id: signing[0].verify_key})
    assert read == release.manifest and read.canary == canary
    np.testing.assert_array_equal(read.canary.input_array(), X)
    assert dataclasses.replace(read) == read and dataclasses.replace(read, canary=None) != read


def test_a_relative_tolerance_travels_only_when_there_is_one(signing) -> None:
    relative = Canary.from_arrays(X, np.ones((3, 4)), 1e-5, 1e-4)
    absolute = Canary.from_arrays(X, np.ones((3, 4)), 1e-5)
    assert relative.to_msgpack()["rtol"] == 1e-4 and "rtol" not in absolute.to_msgpack()
    release = synthetic.make_full_release(synthetic.random_model_file(1), MODEL, 1, signing[0], canary=relative)
    assert read_manifest(release.envelope, {signing[0].verify_key.key_id: signing[0].verify_key}).canary == relative


def test_the_publisher_refuses_a_canary_that_another_runtime_here_would_fail(monkeypatch) -> None:
    from device_client import tflite_runtime

    base, honest = make_tflite(19), tflite_runtime.run

    def runtimes_apart_by(offset: float):
        return lambda path, x, runtime=None: honest(path, x) + (0.0 if runtime == "first" else offset)

    monkeypatch.setattr(tflite_runtime, "installed_runtimes", lambda: ("first", "second"))
    monkeypatch.setattr(tflite_runtime, "run", runtimes_apart_by(1e-6))  # within the default tolerance
    assert model_canary(base, X).rtol > 0
    monkeypatch.setattr(tflite_runtime, "run", runtimes_apart_by(1e-3))
    with pytest.raises(ReleaseInputError, match="does not hold on second"):
        model_canary(base, X)


def _named_fields(signing) -> dict:
    """A full release's signed fields in format 1, whose map is under the field names (a canary map is the
    same in both formats)."""
    model_file = synthetic.random_model_file(1)
    return synthetic.make_full_release(model_file, MODEL, 1, signing[0], manifest_format=1).manifest.signed_fields()


def test_a_valid_canary_map_signed_by_hand_is_accepted(signing) -> None:
    fields = _named_fields(signing)
    read = read_manifest(_sign({**fields, "canary": _canary_map()}, signing[0]),
                         {signing[0].verify_key.key_id: signing[0].verify_key})
    assert read.canary.atol == 1e-5 and read.canary.output_array().shape == (3, 4)


@pytest.mark.parametrize(
    "canary",
    [None, 1, _canary_map(atol=0.0), _canary_map(atol=-1.0), _canary_map(atol=float("nan")),
     _canary_map(atol=float("inf")), _canary_map(atol=1), _canary_map(extra=1),
     {k: v for k, v in _canary_map().items() if k != "atol"},
     _canary_map(outputs=_array(np.zeros((2, 4)))),
     _canary_map(inputs=_array(np.ones((3, 16), np.int8), "i8")),
     _canary_map(outputs={"data": np.full(12, np.nan, "<f4").tobytes(), "dtype": "f32", "shape": [3, 4]}),
     _canary_map(outputs={"data": bytes(47), "dtype": "f32", "shape": [3, 4]}),
     _canary_map(inputs=_array(np.zeros((1, MAX_CANARY_BYTES // 4))), outputs=_array(np.zeros((1, 4)))),
     _canary_map(rtol=0.0), _canary_map(rtol=-1e-4), _canary_map(rtol=float("nan")), _canary_map(rtol=1)],
    ids=["nil", "int", "atol-0", "atol-negative", "atol-nan", "atol-inf", "atol-int", "extra-key", "no-atol",
         "batch-mismatch", "int-codes", "nan-output", "short-data", "too-large", "rtol-0-written", "rtol-negative",
         "rtol-nan", "rtol-int"],
)
def test_a_signed_but_invalid_canary_is_refused(signing, canary: object) -> None:
    fields = _named_fields(signing)
    with pytest.raises(UpdateError):
        read_manifest(_sign({**fields, "canary": canary}, signing[0]),
                      {signing[0].verify_key.key_id: signing[0].verify_key})


def test_a_canary_array_map_must_be_canonical(signing) -> None:
    fields = _named_fields(signing)
    unsorted = _canary_map(inputs=pack(X, "f32").to_msgpack())  # keys dtype, shape, data: valid, not canonical
    with pytest.raises(UpdateError, match="canonical"):
        read_manifest(_sign({**fields, "canary": unsorted}, signing[0]),
                      {signing[0].verify_key.key_id: signing[0].verify_key})


def _tflite_device(make_device, base: bytes):
    device = make_device(installed=False)
    install_model(device.config.model_dir, MODEL, base)
    return device


def test_a_release_passing_its_canary_is_committed(make_device, retained, signing) -> None:
    base = make_tflite(11)
    device = _tflite_device(make_device, base)
    update = synthetic.random_update(base, 12, rank=2)
    canary = update_canary(base, update, X)
    np.testing.assert_allclose(canary.output_array(), reference_outputs(updated_model_file(base, update), X), atol=1e-5)
    retained.add(update_release(update, model=MODEL, version=2, key=signing[0], lifetime_s=synthetic.DAY,
                                canary=canary))
    retained.pump(device)
    assert device.status().last_error is None and device.running_models()[MODEL][0] == 2


def _refused_by_canary(device, retained, release, base: bytes) -> dict:
    retained.add(release)
    retained.pump(device)
    status = read_status(device.status().to_json())
    assert status["state"] == "error" and status["last_error"]["code"] == "canary-failed", status
    path = FileModelStore(device.config.model_dir).model_path(MODEL)
    assert path.read_bytes() == base and status["models"][MODEL]["version"] == 1
    assert not list(path.parent.glob(".staged-*")), "the staged file is discarded"
    return status["last_error"]


def test_a_release_whose_canary_outputs_are_off_is_refused_before_the_swap(make_device, retained, signing) -> None:
    base = make_tflite(13)
    device = _tflite_device(make_device, base)
    outputs = device.predictor(MODEL).predict(X)
    update = synthetic.random_update(base, 14, rank=2)
    good = update_canary(base, update, X)
    wrong = Canary.from_arrays(X, good.output_array() + 1e-3, 1e-4)
    release = update_release(update, model=MODEL, version=2, key=signing[0], lifetime_s=synthetic.DAY, canary=wrong)
    error = _refused_by_canary(device, retained, release, base)
    assert "differ by up to" in error["message"] and error["release"] == 2
    np.testing.assert_array_equal(device.predictor(MODEL).predict(X), outputs)  # the old model still runs
    retained.pump(device)  # the refusal is remembered: the same manifest is not applied again
    assert device.status().last_error.code == "canary-failed"


def test_a_release_whose_model_gives_inf_is_refused(make_device, retained, signing) -> None:
    base = make_tflite(15)
    device = _tflite_device(make_device, base)
    huge = dense_record("fc2.weight", np.full((4, 32), 3e38, np.float32), mode="set")  # finite weights
    update = synthetic.update_of(base, [huge])
    with pytest.raises(ReleaseInputError):
        update_canary(base, update, X)  # the publisher refuses to sign such a canary
    canary = Canary.from_arrays(X, np.zeros((3, 4)), 1e-5)
    release = update_release(update, model=MODEL, version=2, key=signing[0], lifetime_s=synthetic.DAY, canary=canary)
    assert "NaN or Inf" in _refused_by_canary(device, retained, release, base)["message"]


def test_a_canary_on_a_device_running_rcw_fails(make_device, retained, signing, base_model) -> None:
    device = make_device()
    canary = Canary.from_arrays(X, np.zeros((3, 4)), 1e-5)
    release, _ = synthetic.make_delta_release(base_model, 2, MODEL, 2, signing[0], canary=canary)
    _refused_by_canary(device, retained, release, base_model)


def test_the_publisher_checks_the_deployed_file_and_the_model_kind(signing) -> None:
    base = make_tflite(16)
    update = synthetic.random_update(base, 17, rank=2)
    with pytest.raises(ReleaseInputError, match="deployed file"):
        update_canary(make_tflite(18), update, X)
    with pytest.raises(ReleaseInputError, match="tflite"):
        model_canary(synthetic.random_model_file(1), X)
    with pytest.raises(ReleaseInputError, match="do not run"):
        model_canary(base, np.zeros((2, 5), np.float32))
    full = full_release(base, model=MODEL, version=1, key=signing[0], lifetime_s=synthetic.DAY,
                        canary=model_canary(base, X))
    assert full.manifest.canary.output_array().shape == (3, 4)
