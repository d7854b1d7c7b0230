"""`rankcast trust init|add-key|revoke-key|rotate-root|renew|sign|show|publish`: the trust root devices
follow (docs/security.md walks through a key ceremony, a rotation and a revocation)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rankcast.broker_options import add_broker_arguments, broker_session

_DESCRIPTION = """\
A trust root lists the keys that sign releases and the root keys that sign the next root. Each change
makes root v+1 in the trust directory (root.1, root.2, ...), signed by a threshold of the current root
keys and of its own; devices provisioned with root.1 walk every version in order. Root keys stay
offline: sign on the machine that holds them, then carry the root file to the publisher host and run
`rankcast trust publish`. A key file given with --root-key signs when it is a private key (.key) and is
only listed when it is public (.pub)."""

_CHANGES = {
    "add-key": "root v+1 that also lists a release signing key",
    "revoke-key": "root v+1 without a release key: devices refuse its new releases (revoked-key)",
    "rotate-root": "root v+1 with root keys added or removed, or another root threshold",
    "renew": "root v+1 with the same keys and a later expiry",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("trust", help="make, sign, show and publish the trust root devices follow",
                                   description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(title="actions", metavar="ACTION", required=True)
    init = actions.add_parser("init", help="root v1: the root keys, their threshold and the first release key",
                              description="Write DIR/root.1, signed by the private root keys given. Provision "
                              "devices with it (device.toml: trust_root).")
    _directory(init)
    _root_keys(init, "the root keys to list (at least the threshold of them private, to sign)", required=True)
    init.add_argument("--threshold", type=int, required=True, metavar="N",
                      help="root keys that must sign each next root")
    init.add_argument("--release-key", action="append", type=Path, required=True, metavar="PUB",
                      help="a release signing key's .pub (repeat for more)")
    init.add_argument("--release-threshold", type=int, default=1, metavar="N",
                      help="release keys that must sign each manifest (default 1)")
    _expires(init)
    init.set_defaults(run=_init)
    for name, text in _CHANGES.items():
        action = actions.add_parser(name, help=text, description=f"Write {text}. " + _SIGN_NOTE)
        _directory(action)
        _root_keys(action, "signing root keys: a threshold of the current ones and of the new root's")
        if name == "add-key":
            action.add_argument("--key", required=True, type=Path, metavar="PUB", help="the release key's .pub")
            action.add_argument("--models", metavar="ID,ID", help="the model ids it may sign (default: any)")
        if name == "revoke-key":
            action.add_argument("--key", required=True, metavar="KEY_ID|PUB", help="the key id, or its .pub")
        if name == "rotate-root":
            action.add_argument("--add-root-key", action="append", default=[], type=Path, metavar="PUB",
                                help="a new root key (repeat); sign with its private key too")
            action.add_argument("--remove-root-key", action="append", default=[], metavar="KEY_ID|PUB",
                                help="a root key to drop (repeat)")
            action.add_argument("--threshold", type=int, metavar="N", help="the new root threshold")
        if name in ("add-key", "revoke-key"):
            action.add_argument("--release-threshold", type=int, metavar="N", help="a new release threshold")
        _expires(action)
        action.set_defaults(run=_change, action=name)
    sign = actions.add_parser("sign", help="add signatures to a root (root keys on different machines)",
                              description="Add the signatures of the private --root-key files to DIR's newest "
                              "root, or to --version N.")
    _directory(sign)
    _root_keys(sign, "private root keys to sign with", required=True)
    sign.add_argument("--version", type=int, metavar="N", help="the root to sign (default: the newest)")
    sign.set_defaults(run=_sign)
    show = actions.add_parser("show", help="every root version: keys, thresholds, expiry, missing signatures")
    _directory(show)
    show.set_defaults(run=_show)
    publish = actions.add_parser("publish", help="publish every complete root, retained, for devices to walk",
                                 description="Publish root.1, root.2, ... retained on {prefix}/trust/root/N; "
                                 "refuses if a root is short of signatures (devices would refuse it).")
    _directory(publish)
    add_broker_arguments(publish)
    publish.set_defaults(run=_publish)


_SIGN_NOTE = ("Devices take it once a threshold of the current root keys and of its own signed it; sign now "
              "with --root-key, or later on another machine with `rankcast trust sign`.")


def _directory(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", type=Path, metavar="DIR", help="the trust directory (root.1, root.2, ...)")


def _root_keys(parser: argparse.ArgumentParser, text: str, required: bool = False) -> None:
    parser.add_argument("--root-key", action="append", default=[], type=Path, required=required, metavar="KEY",
                        help=f"{text} (repeat)")


def _expires(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--expires", default="365d", metavar="DURATION",
                        help="lifetime of the root, such as 365d or 52w (default 365d); devices take no release "
                        "once their newest root expired")


def _init(args: argparse.Namespace) -> int:
    from publisher.errors import TrustError
    from publisher.release.build import parse_duration
    from publisher.trust.edits import first_root
    from publisher.trust.roots import TrustDir, load_key_file

    trust = TrustDir(args.dir)
    if trust.versions():
        raise TrustError(f"{args.dir} already holds roots {trust.versions()}: change them with add-key, "
                         "revoke-key, rotate-root or renew")
    keys = [load_key_file(path) for path in args.root_key]
    releases = [load_key_file(path).public for path in args.release_key]
    root = first_root([k.public for k in keys], args.threshold, releases, release_threshold=args.release_threshold,
                      lifetime_s=parse_duration(args.expires))
    return _write(trust, root, keys, previous=None)


def _change(args: argparse.Namespace) -> int:
    from publisher.release.build import parse_duration
    from publisher.trust.edits import RootChange, next_root
    from publisher.trust.roots import TrustDir, load_key_file

    trust = TrustDir(args.dir)
    chain = trust.verified_chain() or [trust.latest().root]  # no roots: latest() says to run init
    current = chain[-1]
    signers = [load_key_file(path) for path in args.root_key]
    options: dict = {"lifetime_s": parse_duration(args.expires)}
    if args.action == "add-key":
        options |= {"add_release": [load_key_file(args.key).public],
                    "models": frozenset(m for m in (args.models or "").split(",") if m)}
    if args.action == "revoke-key":
        options["revoke"] = [_key_id(args.key)]
    if args.action == "rotate-root":
        added = [load_key_file(path) for path in args.add_root_key]
        signers += [k for k in added if k.private is not None and k not in signers]
        options |= {"add_root": [k.public for k in added], "remove_root": [_key_id(k) for k in args.remove_root_key],
                    "root_threshold": args.threshold}
    if args.action in ("add-key", "revoke-key"):
        options["release_threshold"] = args.release_threshold
    return _write(trust, next_root(current, RootChange(**options)), signers, previous=current)


def _write(trust, root, keys, previous) -> int:
    from codec.root import read_root, sign_root
    from publisher.errors import TrustError
    from publisher.trust.edits import missing_signatures

    signers = [k.private for k in keys if k.private is not None]
    if not signers:
        raise TrustError(f"root v{root.version} needs at least one signature now: give a private --root-key (.key); "
                         "the other holders add theirs with `rankcast trust sign`")
    path = trust.write_new(root.version, sign_root(root, signers))
    envelope = path.read_bytes()
    print(f"wrote {path}: root v{root.version}, {len(root.root_keys)} root key(s) (threshold {root.root_threshold}), "
          f"{len(root.release_keys)} release key(s) (threshold {root.release_threshold})")
    _say_missing(missing_signatures(read_root(envelope), previous), root.version, trust.path)
    return 0


def _sign(args: argparse.Namespace) -> int:
    from codec.root import read_root, sign_root
    from publisher.errors import TrustError
    from publisher.trust.edits import missing_signatures
    from publisher.trust.roots import TrustDir, load_key_file

    trust = TrustDir(args.dir)
    version = args.version or trust.latest().root.version
    keys = [load_key_file(path) for path in args.root_key]
    public = [str(k.path) for k in keys if k.private is None]
    if public:
        raise TrustError(f"--root-key {', '.join(public)} is a public key: sign with the private one (.key)")
    envelope = sign_root(trust.read(version), [k.private for k in keys])
    trust.replace_signed(version, envelope)
    previous = trust.verified_chain()[version - 2] if version > 1 else None
    print(f"signed root v{version} with {', '.join(k.public.key_id for k in keys)}")
    _say_missing(missing_signatures(read_root(envelope), previous), version, trust.path)
    return 0


def _say_missing(missing: list[str], version: int, directory: Path) -> None:
    if not missing:
        print(f"root v{version} is complete: `rankcast trust publish {directory} --broker URL` sends it to devices")
        return
    for line in missing:
        print(f"root v{version} still needs {line}  (`rankcast trust sign {directory} --root-key KEY`)")


def _show(args: argparse.Namespace) -> int:
    from codec.manifest import iso_time
    from publisher.trust.edits import missing_signatures
    from publisher.trust.roots import TrustDir

    trust = TrustDir(args.dir)
    previous = None
    for version in trust.versions():
        signed = trust.read(version)
        root = signed.root
        missing = missing_signatures(signed, previous)
        print(f"root v{version}  created {iso_time(root.created)}  expires {iso_time(root.expires)}  "
              f"{'complete' if not missing else 'INCOMPLETE'}")
        print(f"  root keys ({root.root_threshold} of {len(root.root_keys)} sign): {', '.join(root.root_keys)}")
        limits = root.release_models
        listed = [kid + (f" (models {','.join(sorted(limits[kid]))})" if kid in limits else "")
                  for kid in root.release_keys]
        print(f"  release keys ({root.release_threshold} of {len(root.release_keys)} sign): {', '.join(listed)}")
        if previous is not None:
            dropped = sorted(set(previous.release_keys) - set(root.release_keys))
            if dropped:
                print(f"  revokes {', '.join(dropped)}")
        for line in missing:
            print(f"  needs {line}")
        previous = root
    if previous is None:
        print(f"{args.dir} holds no trust root: `rankcast trust init {args.dir} ...` makes root v1")
    return 0


def _publish(args: argparse.Namespace) -> int:
    from publisher.release.roots import publish_roots
    from publisher.trust.roots import TrustDir

    trust = TrustDir(args.dir)
    chain = trust.verified_chain()
    if not chain:
        print(f"{args.dir} holds no trust root: `rankcast trust init {args.dir} ...` makes root v1", file=sys.stderr)
        return 1
    with broker_session(args) as session:
        publish_roots(session, [trust.file(root.version).read_bytes() for root in chain], args.prefix)
    print(f"published roots v1..v{chain[-1].version} on {args.prefix}/trust/root/N (retained); devices walk to "
          f"v{chain[-1].version}")
    return 0


def _key_id(text: str) -> str:
    """A key id given as is, or the id of a key file."""
    path = Path(text)
    if path.exists():
        from publisher.trust.roots import load_key_file

        return load_key_file(path).public.key_id
    return text
