"""Broker accounts: a password per device or publisher (mosquitto_passwd) and the publishers' ACL."""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from broker_config.layout import BrokerLayout
from broker_config.render import init_data_dir
from broker_config.tools import run_tool
from codec.manifest import validate_id
from codec.topics import DEFAULT_PREFIX

ROLES = ("device", "publisher")


def add_user(
    layout: BrokerLayout, name: str, role: str, password: str | None = None, prefix: str = DEFAULT_PREFIX
) -> Path | None:
    """Add or reset ``name``'s password; a publisher also gets write access to releases.

    Without ``password`` a random one is generated and written to ``layout.credential(name)`` (mode
    0600), whose path is returned for the device's or publisher's ``password_file``.
    A device's name is its device id: the ACL lets it write only below ``{prefix}/devices/{name}/``.
    """
    validate_id(name, "user name")
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    init_data_dir(layout, prefix)
    credential = None
    if password is None:
        password = secrets.token_urlsafe(24)
        credential = _write_secret(layout.credential(name), password)
    # The password goes through stdin, never the command line, so `ps` cannot show it.
    run_tool("mosquitto_passwd", [str(layout.passwords), name], stdin=f"{password}\n{password}\n")
    if role == "publisher":
        _grant_publisher(layout.acl, name, prefix)
    return credential


def add_devices(layout: BrokerLayout, names: Sequence[str], password: str, prefix: str = DEFAULT_PREFIX) -> None:
    """Add or reset many device accounts that share ``password``, hashed in one mosquitto_passwd run.

    For a fleet's worth of accounts at once (add_user runs the tool once per account, about 50 ms each).
    The ACL still confines each device to its own id, whatever password it shares.
    """
    for name in names:
        validate_id(name, "user name")
    init_data_dir(layout, prefix)
    plain = layout.root / f".passwd-{secrets.token_hex(4)}"
    _write_secret(plain, "\n".join(f"{name}:{password}" for name in names))
    try:
        run_tool("mosquitto_passwd", ["-U", str(plain)], timeout=60 + len(names) / 50)
        replaced = set(names)
        kept = [line for line in layout.passwords.read_text().splitlines() if line.split(":", 1)[0] not in replaced]
        hashed = plain.read_text().splitlines()
        layout.passwords.write_text("".join(f"{line}\n" for line in kept + hashed))
    finally:
        plain.unlink(missing_ok=True)


def _grant_publisher(acl: Path, name: str, prefix: str) -> None:
    block = (f"user {name}\ntopic readwrite {prefix}/models/#\ntopic readwrite {prefix}/trust/#\n"
             f"topic read {prefix}/devices/#\n")
    text = acl.read_text()
    if block not in text:
        acl.write_text(text + ("" if text.endswith("\n") else "\n") + block)


def _write_secret(path: Path, secret: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secret + "\n")
    return path
