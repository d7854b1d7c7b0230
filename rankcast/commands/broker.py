"""`rankcast broker`: run Mosquitto with rankcast's config, add users, make a test CA."""

from __future__ import annotations

import argparse
from pathlib import Path

_DATA_DIR = Path("broker-data")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "broker",
        help="run the MQTT broker (Mosquitto) with rankcast's config; add users; make a test CA",
        description="Without an action: write DIR/mosquitto.conf and run Mosquitto in the foreground: devices "
        "over TLS on --port, where a client id is its user name (one device's credential cannot take over "
        "another's session), publishers and status collectors over TLS on --operator-port; persistence in "
        "DIR/db, device passwords in DIR/passwd, operators' in DIR/passwd-operators, the ACL in DIR/acl. First "
        "make certificates (`certs`, or copy yours to DIR/certs/) and accounts (`adduser`).",
    )
    _add_data_dir(parser, _DATA_DIR)
    parser.add_argument("--port", type=int, default=8883, metavar="N", help="devices' TLS port (8883)")
    parser.add_argument("--operator-port", type=int, default=8884, metavar="N",
                        help="publishers' and collectors' TLS port (8884)")
    parser.add_argument("--bind", metavar="ADDRESS", help="listen on this address only (default: all)")
    parser.add_argument("--dev-port", type=int, metavar="N",
                        help="also plain MQTT for devices on 127.0.0.1:N (development)")
    parser.add_argument("--operator-dev-port", type=int, metavar="N",
                        help="also plain MQTT for operators on 127.0.0.1:N (development)")
    parser.add_argument("--prefix", default="rankcast", help="topic prefix for a new ACL (rankcast)")
    parser.set_defaults(run=_run)
    actions = parser.add_subparsers(title="actions", metavar="ACTION")
    adduser = actions.add_parser("adduser", help="add a device, publisher or collector account (or reset its password)",
                                 description="Add NAME with mosquitto_passwd: a device to DIR/passwd (its NAME is "
                                 "its device id and its client id), a publisher (writes releases and trust roots, "
                                 "reads statuses) or a collector (only reads: dashboards) to DIR/passwd-operators. "
                                 "Reload a running broker afterwards: kill -HUP $(cat DIR/mosquitto.pid)")
    adduser.add_argument("name", metavar="NAME")
    adduser.add_argument("--role", required=True, choices=("device", "publisher", "collector"))
    adduser.add_argument("--password-file", type=Path, metavar="F",
                         help="take the password from F (default: generate one into DIR/credentials/NAME.password)")
    adduser.add_argument("--prefix", default="rankcast", help="topic prefix of the publisher's ACL (rankcast)")
    certs = actions.add_parser("certs", help="make a test CA and a server certificate (openssl)",
                               description="Write DIR/certs/ca.crt (give it to devices as cafile), ca.key, "
                               "server.crt and server.key. For trials; use your own CA in production.")
    certs.add_argument("--host", action="append", metavar="NAME",
                       help="host name or IP address devices connect to (repeatable; default localhost, 127.0.0.1)")
    for action, handler in ((adduser, _adduser), (certs, _certs)):
        _add_data_dir(action, argparse.SUPPRESS)
        action.set_defaults(run=handler)


def _add_data_dir(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument("--data-dir", type=Path, default=default, metavar="DIR",
                        help=f"broker data directory (default ./{_DATA_DIR})")


def _run(args: argparse.Namespace) -> int:
    from broker_config import BrokerLayout, Listeners, exec_broker, prepare

    layout = BrokerLayout(args.data_dir.resolve())
    listeners = Listeners(args.port, args.bind, args.dev_port, args.operator_port, args.operator_dev_port)
    config = prepare(layout, listeners, args.prefix)
    plain = "".join(f", plain MQTT for {who} on 127.0.0.1:{port}" for who, port in
                    (("devices", args.dev_port), ("operators", args.operator_dev_port)) if port)
    print(f"rankcast broker: {config}; devices over TLS on {args.bind or '*'}:{args.port}, operators on "
          f"{args.bind or '*'}:{args.operator_port}{plain}", flush=True)
    exec_broker(layout)


def _adduser(args: argparse.Namespace) -> int:
    from broker_config import BrokerLayout, add_user

    layout = BrokerLayout(args.data_dir.resolve())
    password = args.password_file.read_text().splitlines()[0] if args.password_file else None
    written = add_user(layout, args.name, args.role, password, args.prefix)
    passwords = layout.passwords if args.role == "device" else layout.operator_passwords
    print(f"{args.role} {args.name} added to {passwords}")
    if written is not None:
        print(f"password in {written} (give it to {args.name} as its password_file)")
    print(f"if the broker is running, reload it: kill -HUP $(cat {layout.pid_file})")
    return 0


def _certs(args: argparse.Namespace) -> int:
    from broker_config import BrokerLayout, make_test_ca
    from broker_config.certs import DEFAULT_HOSTS

    layout = BrokerLayout(args.data_dir.resolve())
    ca = make_test_ca(layout, tuple(args.host) if args.host else DEFAULT_HOSTS)
    print(f"test CA {ca} (give it to devices and publishers as cafile)")
    print(f"server certificate {layout.server_cert} and key {layout.server_key}")
    return 0
