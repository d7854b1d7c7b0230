"""`rankcast device run|install|rollback|predict`: the device side, configured by device.toml. Never imports torch."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "device",
        help="run the device client, register a model file, roll back, or run the current model",
        description="The device side: `run` follows the models in device.toml over MQTT and applies their "
        "releases; `install` registers the model file a device already runs (.tflite or .rcw, by content); "
        "`rollback` puts the previous model file back; `predict` runs the current .tflite model on inputs.",
    )
    actions = parser.add_subparsers(title="actions", metavar="ACTION", required=True)
    run_parser = actions.add_parser("run", help="follow the configured models until stopped (Ctrl-C, SIGTERM)")
    install = actions.add_parser("install", help="register the model file this device already runs")
    rollback = actions.add_parser("rollback", help="put the previous model file back")
    predict = actions.add_parser(
        "predict", help="run the current model on inputs from a .npy file",
        description="Print the current model's outputs for FILE.npy: an array in the layout the model was "
        "exported with (PyTorch's: N×F or NCHW); one example may leave out the batch axis. Each row shows the "
        "arg-max class and the scores.",
    )
    for action in (run_parser, install, rollback, predict):
        action.add_argument("--config", required=True, type=Path, metavar="device.toml")
    for action in (install, rollback, predict):
        action.add_argument("--model", required=True, metavar="ID")
    predict.add_argument("--input", required=True, type=Path, metavar="FILE.npy", help="inputs (numpy .npy)")
    predict.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    predict.set_defaults(run=_predict)
    install.add_argument("--file", required=True, type=Path, metavar="FILE", help="the model file")
    install.add_argument("--version", required=True, type=int, metavar="N", help="its release version")
    run_parser.add_argument("-v", "--verbose", action="store_true", help="log every connection and chunk event")
    run_parser.set_defaults(run=_run)
    install.set_defaults(run=_install)
    rollback.set_defaults(run=_rollback)


def _run(args: argparse.Namespace) -> int:
    import logging
    import signal
    import threading

    from device_client import Device, load_config, run_device

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s")
    if not args.verbose:
        logging.getLogger("paho").setLevel(logging.WARNING)
    device = Device(load_config(args.config))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    for model, (version, sha256) in device.running_models().items():
        print(f"{device.device_id}: running {model} version {version} (sha256 {sha256.hex()[:16]})", flush=True)
    run_device(device, stop)
    return 0


def _install(args: argparse.Namespace) -> int:
    from codec.errors import FormatError
    from codec.model_files import file_kind
    from device_client import FileModelStore, load_config
    from device_client.errors import ConfigError

    config = load_config(args.config)
    if args.model not in config.models:
        raise ConfigError(f"{args.model!r} is not in the models of {args.config}; add it there first")
    if file_kind(args.file) is None:
        raise FormatError(f"{args.file} is neither a .tflite nor an RCW model file")
    installed = FileModelStore(config.model_dir).install(args.model, args.file, args.version)
    print(f"{args.model}: version {installed.version} installed at {installed.path} "
          f"(sha256 {installed.sha256.hex()})")
    return 0


def _predict(args: argparse.Namespace) -> int:
    import json

    import numpy as np

    from device_client import FileModelStore, load_config
    from device_client.errors import BadInputError, ConfigError
    from device_client.predictor import Predictor

    config = load_config(args.config)
    if args.model not in config.models:
        raise ConfigError(f"{args.model!r} is not in the models of {args.config}")
    try:
        inputs = np.load(args.input, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise BadInputError(f"{args.input} is not a readable .npy array: {exc}") from None
    predictor = Predictor(FileModelStore(config.model_dir), args.model)
    outputs = predictor.predict(inputs)
    rows = outputs.reshape(len(outputs), -1)
    installed = predictor.loaded
    if args.json:
        print(json.dumps({
            "model": args.model, "version": installed.version, "sha256": installed.sha256.hex(),
            "predictions": [{"argmax": int(row.argmax()), "scores": [float(v) for v in row]} for row in rows],
        }))
        return 0
    print(f"{args.model} version {installed.version} (sha256 {installed.sha256.hex()[:16]}), {len(rows)} inputs")
    for index, row in enumerate(rows):
        scores = np.array2string(row, precision=4, max_line_width=10**6)
        print(f"{index:>5}  class {int(row.argmax()):<4} scores {scores}")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from device_client import FileModelStore, load_config

    config = load_config(args.config)
    installed = FileModelStore(config.model_dir).rollback(args.model)
    print(f"{args.model}: rolled back to version {installed.version} (sha256 {installed.sha256.hex()[:16]}); "
          "releases up to the undone version will not be installed again")
    return 0
