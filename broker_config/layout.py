"""The files of a broker data directory, named in one place."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class BrokerLayout:
    """DIR/mosquitto.conf, DIR/acl, DIR/passwd (devices), DIR/passwd-operators, DIR/certs/, DIR/db/ and
    DIR/credentials/."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "mosquitto.conf"

    @property
    def acl(self) -> Path:
        return self.root / "acl"

    @property
    def passwords(self) -> Path:
        return self.root / "passwd"

    @property
    def operator_passwords(self) -> Path:
        """The accounts of publishers and status collectors (the operator listeners')."""
        return self.root / "passwd-operators"

    @property
    def certs(self) -> Path:
        return self.root / "certs"

    @property
    def ca_cert(self) -> Path:
        return self.certs / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.certs / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.certs / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.certs / "server.key"

    @property
    def persistence(self) -> Path:
        return self.root / "db"

    @property
    def pid_file(self) -> Path:
        return self.root / "mosquitto.pid"

    def credential(self, name: str) -> Path:
        """Where `adduser` writes the password it generated for ``name`` (mode 0600)."""
        return self.root / "credentials" / f"{name}.password"
