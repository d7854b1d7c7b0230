"""Mistakes in reaching the broker, as coded errors that say what to change: a malformed --broker URL, the
wrong scheme for a port, a missing or wrong --cafile, nothing listening."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

from codec.topics import BrokerUrl
from publisher.errors import BrokerUnreachableError, BrokerUrlError, ConfigError

#: OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH.
_HOSTNAME_MISMATCH = 62
_PORTS = ("`rankcast broker` speaks TLS to publishers on --operator-port (8884), and plain MQTT only on "
          "--operator-dev-port")


def parse_broker_url(text: str) -> BrokerUrl:
    """``--broker`` as given: ``mqtts://HOST:PORT`` or ``mqtt://HOST:PORT``, else BrokerUrlError."""
    try:
        return BrokerUrl.parse(text)
    except ValueError as exc:
        said = str(exc) if repr(text) in str(exc) else f"{text!r}: {exc}"
        raise BrokerUrlError(f"--broker: {said}; for example mqtts://localhost:8884 ({_PORTS})") from None


def cafile_error(cafile: Path, exc: Exception) -> ConfigError:
    """``--cafile`` could not be loaded as certificates."""
    return ConfigError(f"--cafile {cafile} is not a readable CA certificate ({exc}); give the broker's CA, such "
                       "as the ca.crt `rankcast broker certs` wrote to broker-data/certs/")


def connect_error(url: BrokerUrl, cafile: Path | None, exc: Exception) -> BrokerUnreachableError:
    """Why the TCP or TLS connection to ``url`` failed, with what to change."""
    where = f"cannot connect to {url}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        if cafile is None:
            hint = ("pass --cafile with the broker's CA certificate (for `rankcast broker`, the ca.crt that "
                    "`rankcast broker certs` wrote to broker-data/certs/)")
        elif exc.verify_code == _HOSTNAME_MISMATCH:
            hint = (f"the broker's certificate does not name {url.host}: connect by a name it holds, or make it "
                    f"again with `rankcast broker certs --host {url.host}`")
        else:
            hint = f"{cafile} did not sign the broker's certificate; give the CA that did"
        return BrokerUnreachableError(f"{where}: certificate verify failed ({exc.verify_message}); {hint}")
    if isinstance(exc, ConnectionRefusedError):
        return BrokerUnreachableError(f"{where}: nothing listens there; is the broker running, and on this port?")
    if isinstance(exc, socket.gaierror):
        return BrokerUnreachableError(f"{where}: unknown host {url.host!r} ({exc.strerror}); check --broker")
    if url.tls and isinstance(exc, ssl.SSLError | ConnectionResetError):
        return BrokerUnreachableError(f"{where}: the TLS handshake failed ({exc}); if this port speaks plain MQTT, "
                                      f"use mqtt://{url.host}:{url.port} ({_PORTS})")
    return BrokerUnreachableError(f"{where}: {exc}")


def lost_before_connack(url: BrokerUrl, reason: str | None, timeout: float) -> BrokerUnreachableError:
    """The broker closed the connection before it answered CONNECT: over plain MQTT, the port may speak TLS."""
    if not url.tls and _speaks_tls(url.host, url.port, timeout):
        return BrokerUnreachableError(f"{url} closed the connection before answering: the broker speaks TLS on "
                                      f"this port; use mqtts://{url.host}:{url.port} (with --cafile)")
    return BrokerUnreachableError(f"{url} closed the connection before answering CONNECT ({reason}); see the "
                                  "broker's log")


def _speaks_tls(host: str, port: int, timeout: float) -> bool:
    """Whether a TLS handshake with ``host:port`` completes (the certificate is not checked)."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout) as raw, context.wrap_socket(raw, server_hostname=host):
            return True
    except OSError:  # ssl.SSLError is an OSError
        return False
