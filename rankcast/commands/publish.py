"""`rankcast publish`: sign a release and put it on the broker, retained, for every device of a model."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from rankcast.broker_options import add_broker_arguments, broker_session


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "publish",
        help="publish a signed release to the MQTT broker",
        description="Sign a release of MODEL at VERSION and publish it retained at QoS 1: every chunk, then "
        "the manifest, waiting for each acknowledgement. Devices following the model get it whenever "
        "they connect. An update's manifest carries an index of the older releases the broker retains, and "
        "with --deployed or --model-file the whole updated file is published too, as the fallback: a device "
        "on any indexed version catches up by the cheapest chain of deltas or by the full file. To widen, narrow "
        "or pause a staged rollout, use `rankcast rollout` (it sends the manifest alone). Before it sends anything it "
        "reads the broker's current release and refuses (one line with a code) a version below it, another "
        "payload under its version, a delta for a file no release produces, another signing key, another fleet "
        "than the current release's, and a model id the broker has never seen (without --new-model).",
    )
    add_broker_arguments(parser)
    parser.add_argument("--model", required=True, metavar="ID", help="model id (one topic level)")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--update", type=Path, metavar="UPDATE.rcu", help="an update from `rankcast update build`")
    what.add_argument("--full", type=Path, metavar="FILE", help="a whole model file (first deployment)")
    what.add_argument("--store", type=Path, metavar="DIR",
                      help="publish the newest version of --model that `update build --store` recorded in this "
                      "release store and that is not published yet (its update, with its model file as the full "
                      "fallback), or the one --version names (again, e.g. with a wider --rollout)")
    parser.add_argument("--version", type=int, metavar="N", help="release version, above the current one")
    parser.add_argument("--base-version", type=int, metavar="N", help="version the update applies to (N-1)")
    parser.add_argument("--key", required=True, type=Path, metavar="signing.key", help="release signing key")
    parser.add_argument("--cosign-key", action="append", default=[], type=Path, metavar="signing.key",
                        help="another release key that signs too (repeat), for a trust root whose release "
                        "threshold is above 1 (docs/security.md)")
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
                        help="with --update: the model file the update applies to (its base); the updated file is "
                        "computed from it for the canary and the full fallback")
    parser.add_argument("--model-file", type=Path, metavar="FILE",
                        help="with --update: the model file the update produces (`update build --out-model`), "
                        "published as the full fallback (instead of computing it from --deployed)")
    parser.add_argument("--index-depth", type=int, default=7, metavar="N",
                        help="list the deltas of the N versions before this one in its index, so devices up to N+1 "
                        "deltas behind catch up by chain (default 7: devices chain at most 8 by default); prune "
                        "keeps what it lists")
    parser.add_argument("--fleet", default=os.environ.get("RANKCAST_FLEET"), metavar="NAME",
                        help="sign the fleet the release is for into its manifest (default: $RANKCAST_FLEET, else "
                        "none); devices whose device.toml names another fleet refuse it (wrong-fleet), so a key "
                        "that signs for staging and production cannot have releases replayed across brokers")
    parser.add_argument("--manifest-format", type=int, choices=(1, 2), default=2, metavar="N",
                        help="manifest format (default 2: short keys, a payload of one chunk of at most 4 KiB "
                        "inline); 1 is for fleets whose devices predate format 2")
    parser.add_argument("--new-model", action="store_true",
                        help="this is the model's first release (otherwise a model id the broker has never seen "
                        "is refused as a likely typo: new-model)")
    parser.add_argument("--force", action="store_true",
                        help="skip the checks against the broker's current release (version, payload, base, key): "
                        "for deliberate exceptions such as a new signing key the devices already trust")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from codec.manifest import iso_time
    from codec.update_file import read_update_file
    from publisher.release.build import check_chunk_size, full_release, load_release_key, parse_duration, update_release
    from publisher.release.publish import publish_with_index

    stored = _stored(args)
    options = dict(
        model=args.model, version=args.version, key=load_release_key(args.key),
        cosigners=tuple(load_release_key(path) for path in args.cosign_key),
        chunk_size=check_chunk_size(args.chunk_size),
        rollout_percent=args.rollout, lifetime_s=parse_duration(args.expires), fleet=_fleet(args.fleet),
        manifest_format=args.manifest_format,
    )
    fallback = None
    if args.full is not None:
        model_file = args.full.read_bytes()
        release = full_release(model_file, canary=_canary(args, lambda: model_file), **options)
        make = lambda index: release  # noqa: E731 - a full release needs no path to it
    else:
        update = _checked_update(args.update, read_update_file(args.update))
        target = _target_file(args, update)
        canary = _canary(args, lambda: target if target is not None else _updated(args, update))
        if target is not None and update.payload_kind == "delta":
            fallback = full_release(target, canary=canary, **options)

        def make(index):
            return update_release(update, base_version=args.base_version, canary=canary, index=index, **options)
    total = len(make(None).sent_chunks) + 2 + (0 if fallback is None else len(fallback.sent_chunks) + 1)
    progress = _Progress(total, f"{args.model} v{args.version}")
    try:
        with broker_session(args) as session:
            release = publish_with_index(session, make, model=args.model, version=args.version, prefix=args.prefix,
                                         key=options["key"].verify_key, fallback=fallback, depth=args.index_depth,
                                         new_model=args.new_model, force=args.force, on_ack=progress.update)
    except KeyboardInterrupt:
        progress.finish()
        print(_interrupted(args, progress.done, total), file=sys.stderr)
        return 130
    progress.finish()
    if stored is not None:
        from publisher.release.store import ReleaseStore

        store = ReleaseStore(args.store)
        stored = store.record_published(stored, "delta", release.envelope)
        if fallback is not None:
            store.record_published(stored, "full", fallback.envelope)
    manifest = release.manifest
    canary = "" if manifest.canary is None else f", canary of {manifest.canary.inputs.shape[0]} inputs"
    extra = "" if fallback is None else f", full fallback {fallback.manifest.payload_length} bytes"
    if fallback is None and manifest.payload_kind == "delta":
        print(f"{args.model} v{args.version}: no full fallback was published (pass --deployed or --model-file); "
              "devices no chain of deltas reaches will report wrong-base", file=sys.stderr)
    fleet = "" if manifest.fleet is None else f" for fleet {manifest.fleet}"
    chunks = f"{manifest.chunk_count} chunks{' (inline)' if release.inline else ''}"
    print(f"published {args.model} release {manifest.version}{fleet} ({manifest.payload_kind}): {chunks}, "
          f"{manifest.payload_length} bytes, rollout {manifest.rollout_percent:g}%, key {manifest.key_id}, "
          f"expires {iso_time(manifest.expires)}, index of {len(manifest.index or ())} releases{extra}{canary}")
    return 0


def _stored(args: argparse.Namespace):
    """With --store: --update, --model-file and --version from the newest recorded version not yet published
    (or the one --version names); without it, check that the release is named."""
    if args.store is None:
        if args.update is None and args.full is None:
            raise _input_error("name the release: --update UPDATE.rcu, --full FILE, or --store DIR")
        if args.version is None:
            raise _input_error("--version N is needed: the release's version, above the current one")
        return None
    from publisher.release.store import ReleaseStore

    built = [v for v in ReleaseStore(args.store).versions(args.model) if v.update]
    chosen = [v for v in built if v.version == args.version or (args.version is None and "delta" not in v.published)]
    if not chosen:
        what = "no unpublished update" if args.version is None else f"no update at version {args.version}"
        raise _input_error(f"{args.store} holds {what} of {args.model}: build one with `rankcast update build "
                           f"--store {args.store} --model {args.model}`")
    stored = chosen[-1]
    args.update, args.version = stored.path(stored.update), stored.version
    args.model_file = args.model_file or stored.model_path
    return stored


def _fleet(name: str | None) -> str | None:
    """--fleet checked as devices check it (one topic level's characters)."""
    if name is None:
        return None
    from codec.errors import FormatError
    from codec.manifest import validate_id
    from publisher.errors import ConfigError

    try:
        return validate_id(name, "--fleet")
    except FormatError as exc:
        raise ConfigError(str(exc)) from None


def _checked_update(path: Path, update):
    """The update, once its payload decodes whole under the devices' limits (a damaged .rcu fails here,
    before anything is published, not on every device)."""
    from codec.errors import UpdateError
    from codec.payload import iter_records

    try:
        for _ in iter_records(update.payload, update.decompressed_length, layout=update.layout()):
            pass
    except UpdateError as exc:
        raise _input_error(f"{path} is damaged, its payload does not decode [{exc.code}]: {exc}; build it "
                           "again") from None
    return update


def _target_file(args: argparse.Namespace, update) -> bytes | None:
    """The model file the update produces: --model-file checked against the update's target sha256, or
    computed from --deployed; None with neither."""
    import hashlib

    if args.model_file is not None:
        data = args.model_file.read_bytes()
        if update.target_sha256 is not None and hashlib.sha256(data).digest() != update.target_sha256:
            raise _input_error(f"{args.model_file} is not the model file {args.update} produces (its sha256 "
                               "differs from the update's target); pass the file `update build --out-model` wrote")
        return data
    return _updated(args, update) if args.deployed is not None else None


def _canary(args: argparse.Namespace, updated_file):
    """The canary for --canary (None without it); ``updated_file()`` gives the model devices will run."""
    if args.canary is None:
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


def _interrupted(args: argparse.Namespace, done: int, total: int) -> str:
    """What the broker holds after Ctrl-C, and how to finish or clear it."""
    release = f"{args.model} v{args.version}"
    if done >= total:
        return f"interrupted after the broker acknowledged all {total} messages: {release} is published"
    clear = (f"`rankcast release delete --model {args.model} --version {args.version}` with the same broker options "
             "clears what was sent")
    if done == total - 1:
        return (f"interrupted while the model's manifest of {release} was on its way (everything else is on the "
                f"broker): `rankcast release list --model {args.model}` shows whether it is published; if not, run the "
                "same command again")
    held = "nothing" if done == 0 else f"{done} of {total} messages"
    return (f"interrupted: the broker acknowledged {held} of {release}, and the model's manifest (sent only after "
            f"all the rest) was not sent, so devices have not seen this release; run the same command again to "
            f"finish it, or {clear}")


class _Progress:
    """An acknowledgement counter on stderr: a redrawn bar on a terminal, nothing otherwise; ``done`` is the
    count so far."""

    def __init__(self, total: int, label: str) -> None:
        self.total, self.label = total, label
        self.shown = sys.stderr.isatty()
        self.done = 0

    def update(self, done: int) -> None:
        self.done = done
        if self.shown:
            filled = 30 * done // self.total
            sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}] {done}/{self.total} acknowledged")
            sys.stderr.flush()

    def finish(self) -> None:
        if self.shown:
            sys.stderr.write("\n")
