"""`rankcast keygen DIR`: make the Ed25519 key pair that signs releases."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "keygen",
        help="create a release signing key pair",
        description="Write DIR/signing.key (private, mode 0600) and DIR/signing.pub (give this to devices). "
        "Existing keys are never overwritten.",
    )
    parser.add_argument("dir", type=Path, metavar="DIR", help="directory for signing.key and signing.pub")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from codec.keys import generate_signing_key, write_keypair

    key = generate_signing_key()
    private_path, public_path = write_keypair(args.dir, key)
    print(f"key id      {key.verify_key.key_id}")
    print(f"private key {private_path}  (keep secret; the publisher signs with it)")
    print(f"public key  {public_path}  (give it to devices: trusted_keys, or a trust root's --release-key)")
    return 0
