"""Broker accounts (mosquitto_passwd): devices in DIR/passwd, for the device listeners; publishers and
status collectors in DIR/passwd-operators, for the operator listeners, with their ACL blocks."""

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

ROLES = ("device", "publisher", "collector")
#: What each operator role may do beyond the ACL's patterns (a collector only reads, for dashboards).
_OPERATOR_ACCESS = {
    "publisher": ("readwrite models/#", "readwrite trust/#", "read devices/#"),
    "collector": ("read models/#", "read trust/#", "read devices/#"),
}


def add_user(
    layout: BrokerLayout, name: str, role: str, password: str | None = None, prefix: str = DEFAULT_PREFIX
) -> Path | None:
    """Add or reset ``name``'s password; a publisher also gets write access to releases, a collector read
    access to every status.

    Without ``password`` a random one is generated and written to ``layout.credential(name)`` (mode
    0600), whose path is returned for the account's ``password_file``.
    A device's name is its device id: the ACL lets it write only below ``{prefix}/devices/{name}/``, and
    the device listeners make it its client id too. An account has one role: a name given another one
    leaves the other password file.
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
    passwords, other = ((layout.passwords, layout.operator_passwords) if role == "device"
                        else (layout.operator_passwords, layout.passwords))
    _remove_accounts(other, {name})
    run_tool("mosquitto_passwd", [str(passwords), name], stdin=f"{password}\n{password}\n")
    if role != "device":
        _grant_operator(layout.acl, name, _OPERATOR_ACCESS[role], prefix)
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
        _remove_accounts(layout.operator_passwords, set(names))
        _remove_accounts(layout.passwords, set(names))
        layout.passwords.write_text(layout.passwords.read_text() + plain.read_text())
    finally:
        plain.unlink(missing_ok=True)


def _remove_accounts(passwords: Path, names: set[str]) -> None:
    """Drop ``names``' lines from a password file (rewritten with every line ending in a newline)."""
    kept = [line for line in passwords.read_text().splitlines() if line.split(":", 1)[0] not in names]
    passwords.write_text("".join(f"{line}\n" for line in kept))


def _grant_operator(acl: Path, name: str, access: tuple[str, ...], prefix: str) -> None:
    block = f"user {name}\n" + "".join(f"topic {line.split()[0]} {prefix}/{line.split()[1]}\n" for line in access)
    text = acl.read_text()
    if block not in text:
        acl.write_text(text + ("" if text.endswith("\n") else "\n") + block)


def _write_secret(path: Path, secret: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secret + "\n")
    return path
