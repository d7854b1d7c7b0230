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


@dataclass(frozen=True)
class Listeners:
    """The TLS listener (all interfaces unless ``bind``) and an optional plain loopback one."""

    tls_port: int = DEFAULT_TLS_PORT
    bind: str | None = None
    dev_port: int | None = None

    def __post_init__(self) -> None:
        for port in (self.tls_port, self.dev_port):
            if port is not None and not 0 < port < 65536:
                raise ValueError(f"port {port} is outside 1..65535")
        if self.tls_port == self.dev_port:
            raise ValueError("the TLS and development ports must differ")


def render_config(layout: BrokerLayout, listeners: Listeners, prefix: str = DEFAULT_PREFIX) -> str:
    """The text of mosquitto.conf for ``layout``; Mosquitto runs as the current user."""
    dev = (
        f"# Development only: plain MQTT, loopback only, same credentials and ACL.\n"
        f"listener {listeners.dev_port} 127.0.0.1\nprotocol mqtt\n"
        if listeners.dev_port is not None
        else "# No plain listener (`rankcast broker --dev-port 1883` adds one on 127.0.0.1).\n"
    )
    template = Template((TEMPLATE_DIR / "mosquitto.conf").read_text())
    return template.substitute(
        prefix=prefix,
        password_file=layout.passwords,
        acl_file=layout.acl,
        persistence_dir=layout.persistence,
        user=pwd.getpwuid(os.geteuid()).pw_name,
        tls_listener=f"{listeners.tls_port} {listeners.bind}" if listeners.bind else str(listeners.tls_port),
        cafile=layout.ca_cert,
        certfile=layout.server_cert,
        keyfile=layout.server_key,
        dev_listener=dev,
    )


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
    """Directories, the ACL and an empty password file (mode 0600); existing files are kept."""
    layout.persistence.mkdir(parents=True, exist_ok=True)
    layout.certs.mkdir(exist_ok=True)
    if not layout.acl.exists():
        layout.acl.write_text(render_acl(prefix))
    if not layout.passwords.exists():
        os.close(os.open(layout.passwords, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
