"""Filling a broker data directory: mosquitto.conf from the template, the ACL, an empty password file."""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from pathlib import Path
from string import Template

from broker_config.errors import NotPreparedError
from broker_config.layout import BrokerLayout
from codec.topics import DEFAULT_PREFIX

TEMPLATE_DIR = Path(__file__).parent
DEFAULT_TLS_PORT = 8883
DEFAULT_OPERATOR_PORT = 8884


@dataclass(frozen=True)
class Listeners:
    """The device and operator TLS listeners (all interfaces unless ``bind``) and optional plain loopback
    ones for development (``dev_port`` for devices, ``operator_dev_port`` for operators)."""

    tls_port: int = DEFAULT_TLS_PORT
    bind: str | None = None
    dev_port: int | None = None
    operator_port: int = DEFAULT_OPERATOR_PORT
    operator_dev_port: int | None = None

    def __post_init__(self) -> None:
        ports = [p for p in (self.tls_port, self.operator_port, self.dev_port, self.operator_dev_port) if p is not None]
        for port in ports:
            if not 0 < port < 65536:
                raise ValueError(f"port {port} is outside 1..65535")
        if len(set(ports)) < len(ports):
            raise ValueError(f"every listener needs a port of its own, got {ports}")


def render_config(layout: BrokerLayout, listeners: Listeners, prefix: str = DEFAULT_PREFIX) -> str:
    """The text of mosquitto.conf for ``layout``; Mosquitto runs as the current user."""
    device = _security(layout.passwords, layout, bound_ids=True)
    operator = _security(layout.operator_passwords, layout, bound_ids=False)
    plain = [f"# Development only: plain MQTT on loopback, {who}'s accounts.\nlistener {port} 127.0.0.1\n"
             f"protocol mqtt\n{security}\n"
             for who, port, security in (("devices", listeners.dev_port, device),
                                         ("operators", listeners.operator_dev_port, operator)) if port is not None]
    template = Template((TEMPLATE_DIR / "mosquitto.conf").read_text())
    return template.substitute(
        prefix=prefix,
        persistence_dir=layout.persistence,
        user=pwd.getpwuid(os.geteuid()).pw_name,
        tls_listener=_address(listeners.tls_port, listeners.bind),
        operator_listener=_address(listeners.operator_port, listeners.bind),
        device_security=device,
        operator_security=operator,
        cafile=layout.ca_cert,
        certfile=layout.server_cert,
        keyfile=layout.server_key,
        dev_listeners="\n".join(plain) or "# No plain listeners (`rankcast broker --dev-port N --operator-dev-port M` "
        "adds them on 127.0.0.1).\n",
    )


def _security(passwords: Path, layout: BrokerLayout, bound_ids: bool) -> str:
    """A listener's accounts and ACL (per_listener_settings: every listener names its own)."""
    lines = ["allow_anonymous false", f"password_file {passwords}", f"acl_file {layout.acl}"]
    if bound_ids:
        lines.append("use_username_as_clientid true")
    return "\n".join(lines)


def _address(port: int, bind: str | None) -> str:
    return f"{port} {bind}" if bind else str(port)


def render_acl(prefix: str = DEFAULT_PREFIX) -> str:
    """The ACL's fixed part: patterns for every device; publisher blocks are appended by add_user."""
    return Template((TEMPLATE_DIR / "acl").read_text()).substitute(prefix=prefix)


def prepare(layout: BrokerLayout, listeners: Listeners, prefix: str = DEFAULT_PREFIX) -> Path:
    """Create the ACL and password file if missing, check the certificates, write mosquitto.conf."""
    init_data_dir(layout, prefix)
    for path in (layout.ca_cert, layout.server_cert, layout.server_key):
        if not path.is_file():
            raise NotPreparedError(
                f"{path} is missing: make a test CA with `rankcast broker certs --data-dir {layout.root}` "
                "or copy your server certificate, key and CA there"
            )
    layout.config.write_text(render_config(layout, listeners, prefix))
    return layout.config


def init_data_dir(layout: BrokerLayout, prefix: str = DEFAULT_PREFIX) -> None:
    """Directories, the ACL and the two password files (mode 0600); existing files are kept.

    A data directory from before the operator listener had its publishers in the device password file:
    their lines move to the operator one (the ACL's ``user`` blocks name them)."""
    layout.persistence.mkdir(parents=True, exist_ok=True)
    layout.certs.mkdir(exist_ok=True)
    if not layout.acl.exists():
        layout.acl.write_text(render_acl(prefix))
    if not layout.passwords.exists():
        os.close(os.open(layout.passwords, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    if not layout.operator_passwords.exists():
        os.close(os.open(layout.operator_passwords, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        _move_operators(layout)


def _move_operators(layout: BrokerLayout) -> None:
    operators = {line.split(" ", 1)[1].strip() for line in layout.acl.read_text().splitlines()
                 if line.startswith("user ")}
    lines = layout.passwords.read_text().splitlines(keepends=True)
    moved = [line for line in lines if line.split(":", 1)[0] in operators]
    if moved:
        layout.operator_passwords.write_text("".join(moved))
        layout.passwords.write_text("".join(line for line in lines if line not in moved))
