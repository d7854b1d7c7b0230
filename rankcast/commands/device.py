"""`rankcast device run|install|rollback`: the device side, configured by device.toml. Never imports torch."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "device",
        help="run the device client, register a model file, or roll back",
        description="The device side: `run` follows the models in device.toml over MQTT and applies their "
        "releases; `install` registers the model file a device already runs; `rollback` puts the previous "
        "model file back.",
    )
    actions = parser.add_subparsers(title="actions", metavar="ACTION", required=True)
    run_parser = actions.add_parser("run", help="follow the configured models until stopped (Ctrl-C, SIGTERM)")
    install = actions.add_parser("install", help="register the model file this device already runs")
    rollback = actions.add_parser("rollback", help="put the previous model file back")
    for action in (run_parser, install, rollback):
        action.add_argument("--config", required=True, type=Path, metavar="device.toml")
    for action in (install, rollback):
        action.add_argument("--model", required=True, metavar="ID")
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
    from device_client import FileModelStore, load_config
    from device_client.errors import ConfigError

    config = load_config(args.config)
    if args.model not in config.models:
        raise ConfigError(f"{args.model!r} is not in the models of {args.config}; add it there first")
    installed = FileModelStore(config.model_dir).install(args.model, args.file, args.version)
    print(f"{args.model}: version {installed.version} installed at {installed.path} "
          f"(sha256 {installed.sha256.hex()})")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from device_client import FileModelStore, load_config

    config = load_config(args.config)
    installed = FileModelStore(config.model_dir).rollback(args.model)
    print(f"{args.model}: rolled back to version {installed.version} (sha256 {installed.sha256.hex()[:16]}); "
          "releases up to the undone version will not be installed again")
    return 0
