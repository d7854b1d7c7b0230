"""`rankcast publish`: sign a release and put it on the broker, retained, for every device of a model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_broker_arguments(parser: argparse.ArgumentParser) -> None:
    """--broker, --username, --password-file, --cafile and --prefix, shared by the broker-facing commands."""
    parser.add_argument("--broker", required=True, metavar="URL", help="mqtts://HOST:PORT (TLS) or mqtt://HOST:PORT")
    parser.add_argument("--username", metavar="U", help="broker user name")
    parser.add_argument("--password-file", type=Path, metavar="F", help="file whose first line is the password")
    parser.add_argument("--cafile", type=Path, metavar="CA", help="CA certificate of the broker (default: system)")
    parser.add_argument("--prefix", default="rankcast", help="topic prefix (default: rankcast)")
    parser.add_argument("--timeout", type=float, default=30.0, metavar="S", help="seconds to wait for the broker")


def broker_session(args: argparse.Namespace):
    """A publisher.release.session.BrokerSession for the parsed broker arguments; ``with`` connects it."""
    from codec.topics import BrokerUrl
    from publisher.release.session import BrokerLogin, BrokerSession

    login = BrokerLogin(BrokerUrl.parse(args.broker), args.username, args.password_file, args.cafile)
    return BrokerSession(login, timeout=args.timeout)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "publish",
        help="publish a signed release to the MQTT broker",
        description="Sign a release of MODEL at VERSION and publish it retained at QoS 1: every chunk, then "
        "the manifest, waiting for each acknowledgement. Devices following the model get it whenever "
        "they connect. To widen a staged rollout, publish the same version again with a higher --rollout.",
    )
    add_broker_arguments(parser)
    parser.add_argument("--model", required=True, metavar="ID", help="model id (one topic level)")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--update", type=Path, metavar="UPDATE.rcu", help="an update from `rankcast update build`")
    what.add_argument("--full", type=Path, metavar="FILE", help="a whole model file (first deployment)")
    parser.add_argument("--version", required=True, type=int, metavar="N", help="release version (> devices')")
    parser.add_argument("--base-version", type=int, metavar="N", help="version the update applies to (N-1)")
    parser.add_argument("--key", required=True, type=Path, metavar="signing.key", help="release signing key")
    parser.add_argument("--chunk-size", type=int, default=32 * 1024, metavar="BYTES", help="default 32768")
    parser.add_argument("--rollout", type=float, default=100.0, metavar="PCT", help="percent of devices (100)")
    parser.add_argument("--expires", default="30d", metavar="DURATION", help="lifetime: 12h, 30d, 2w (30d)")
    parser.add_argument("--canary", type=Path, metavar="INPUTS.npy",
                        help="sign these inputs and the updated .tflite model's outputs on them into the manifest; "
                        "devices run them before swapping the model in and refuse it (canary-failed) if off")
    parser.add_argument("--canary-atol", type=float, default=1e-5, metavar="TOL",
                        help="absolute part of the difference a device accepts per canary output (default 1e-5)")
    parser.add_argument("--canary-rtol", type=float, default=1e-4, metavar="TOL",
                        help="relative part, times the output's magnitude (default 1e-4: other CPUs and runtimes "
                        "sum in other orders)")
    parser.add_argument("--deployed", type=Path, metavar="FILE",
                        help="with --update and --canary: the model file the devices run now (the update's base)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from codec.keys import load_signing_key
    from codec.update_file import read_update_file
    from publisher.release.build import full_release, parse_duration, update_release
    from publisher.release.publish import publish_release

    options = dict(
        model=args.model, version=args.version, key=load_signing_key(args.key), chunk_size=args.chunk_size,
        rollout_percent=args.rollout, lifetime_s=parse_duration(args.expires),
    )
    if args.full is not None:
        model_file = args.full.read_bytes()
        release = full_release(model_file, canary=_canary(args, lambda: model_file), **options)
    else:
        update = read_update_file(args.update)
        release = update_release(update, base_version=args.base_version,
                                 canary=_canary(args, lambda: _updated(args, update)), **options)
    manifest, total = release.manifest, len(release.chunks) + 2
    progress = _Progress(total, f"{args.model} v{args.version}")
    with broker_session(args) as session:
        publish_release(session, release, args.prefix, on_ack=progress.update)
    progress.finish()
    canary = "" if manifest.canary is None else f", canary of {manifest.canary.inputs.shape[0]} inputs"
    print(f"published {args.model} release {manifest.version} ({manifest.payload_kind}): {manifest.chunk_count} "
          f"chunks, {manifest.payload_length} bytes, rollout {manifest.rollout_percent:g}%, key {manifest.key_id}, "
          f"expires {manifest.expires}{canary}")
    return 0


def _canary(args: argparse.Namespace, updated_file):
    """The canary for --canary (None without it); ``updated_file()`` gives the model devices will run."""
    if args.canary is None:
        if args.deployed is not None:
            raise _input_error("--deployed is only used with --canary")
        return None
    import numpy as np

    from publisher.tflite.canary import model_canary

    try:
        inputs = np.load(args.canary, allow_pickle=False)
    except (ValueError, EOFError) as exc:
        raise _input_error(f"{args.canary} is not a readable .npy array: {exc}") from None
    return model_canary(updated_file(), inputs, args.canary_atol, args.canary_rtol)


def _updated(args: argparse.Namespace, update) -> bytes:
    from publisher.tflite.canary import updated_file

    if args.deployed is None and update.payload_kind == "delta":
        raise _input_error("--canary with a delta --update needs --deployed FILE: the model file devices run now")
    return updated_file(args.deployed.read_bytes() if args.deployed else b"", update)


def _input_error(message: str) -> Exception:
    from publisher.errors import ReleaseInputError

    return ReleaseInputError(message)


class _Progress:
    """An acknowledgement counter on stderr: a redrawn bar on a terminal, nothing otherwise."""

    def __init__(self, total: int, label: str) -> None:
        self.total, self.label = total, label
        self.shown = sys.stderr.isatty()

    def update(self, done: int) -> None:
        if self.shown:
            filled = 30 * done // self.total
            sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}] {done}/{self.total} acknowledged")
            sys.stderr.flush()

    def finish(self) -> None:
        if self.shown:
            sys.stderr.write("\n")
