"""The broker options every broker-facing command takes (publish, release, status), and the session they open.

Standard library only at import time, like the command modules; a mistyped --broker is a coded error
(``bad-broker-url``) before anything connects.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_broker_arguments(parser: argparse.ArgumentParser) -> None:
    """--broker, --username, --password-file, --cafile, --prefix and --timeout."""
    parser.add_argument("--broker", required=True, metavar="URL", help="mqtts://HOST:PORT (TLS) or mqtt://HOST:PORT")
    parser.add_argument("--username", metavar="U", help="broker user name")
    parser.add_argument("--password-file", type=Path, metavar="F", help="file whose first line is the password")
    parser.add_argument("--cafile", type=Path, metavar="CA", help="CA certificate of the broker (default: system)")
    parser.add_argument("--prefix", default="rankcast", help="topic prefix (default: rankcast)")
    parser.add_argument("--timeout", type=float, default=30.0, metavar="S", help="seconds to wait for the broker")


def broker_session(args: argparse.Namespace):
    """A publisher.release.session.BrokerSession for the parsed broker arguments; ``with`` connects it."""
    from publisher.release.broker_errors import parse_broker_url
    from publisher.release.session import BrokerLogin, BrokerSession

    login = BrokerLogin(parse_broker_url(args.broker), args.username, args.password_file, args.cafile)
    return BrokerSession(login, timeout=args.timeout)
