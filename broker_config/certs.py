"""A test certificate authority and a server certificate for the broker's TLS listener (openssl).

For trials and tests. In production use certificates from your own CA and copy them to DIR/certs/.
"""

from __future__ import annotations

import ipaddress
import secrets
from pathlib import Path

from broker_config.layout import BrokerLayout
from broker_config.render import init_data_dir
from broker_config.tools import run_tool

DEFAULT_HOSTS = ("localhost", "127.0.0.1")
_EC_KEY = ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out"]


def make_test_ca(layout: BrokerLayout, hosts: tuple[str, ...] = DEFAULT_HOSTS, days: int = 825) -> Path:
    """Write certs/ca.{key,crt} and certs/server.{key,crt} valid for ``hosts``; returns the CA path.

    Existing certificates are never overwritten: remove DIR/certs first to make new ones.
    """
    init_data_dir(layout)
    for path in (layout.ca_key, layout.ca_cert, layout.server_key, layout.server_cert):
        if path.exists():
            raise FileExistsError(f"{path} exists; remove {layout.certs} first to make a new test CA")
    run_tool("openssl", [*_EC_KEY, str(layout.ca_key)])
    run_tool("openssl", [
        "req", "-x509", "-new", "-key", str(layout.ca_key), "-sha256", "-days", str(days),
        "-subj", "/CN=rankcast test CA", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-out", str(layout.ca_cert),
    ])
    run_tool("openssl", [*_EC_KEY, str(layout.server_key)])
    request = layout.certs / "server.csr"
    extensions = layout.certs / "server.ext"
    extensions.write_text(
        f"subjectAltName={','.join(_san(host) for host in hosts)}\n"
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n"
    )
    run_tool("openssl", ["req", "-new", "-key", str(layout.server_key), "-subj", f"/CN={hosts[0]}",
                         "-out", str(request)])
    run_tool("openssl", [
        "x509", "-req", "-in", str(request), "-CA", str(layout.ca_cert), "-CAkey", str(layout.ca_key),
        "-set_serial", f"0x{secrets.token_hex(16)}", "-days", str(days), "-sha256",
        "-extfile", str(extensions), "-out", str(layout.server_cert),
    ])
    request.unlink()
    extensions.unlink()
    layout.ca_key.chmod(0o600)
    layout.server_key.chmod(0o600)
    return layout.ca_cert


def _san(host: str) -> str:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return f"DNS:{host}"
    return f"IP:{host}"
