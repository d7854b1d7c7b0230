"""Running the command-line tools the broker setup needs: mosquitto_passwd, openssl, mosquitto."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from broker_config.errors import ToolError

#: Where Debian and Ubuntu install the broker, outside a non-root user's PATH.
_SBIN = Path("/usr/sbin")


def find_tool(name: str) -> str:
    """Absolute path of ``name`` on PATH or in /usr/sbin; raises ToolError if it is not installed."""
    found = shutil.which(name) or shutil.which(name, path=str(_SBIN))
    if found is None:
        raise ToolError(f"{name} is not installed: install the mosquitto and openssl packages (make mosquitto)")
    return found


def run_tool(name: str, args: list[str], stdin: str | None = None, timeout: float = 60.0) -> None:
    """Run ``name args``; raises ToolError with the tool's own message if it fails."""
    try:
        result = subprocess.run(
            [find_tool(name), *args], input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise ToolError(f"{name} did not finish within {timeout:.0f} s") from None
    if result.returncode != 0:
        message = (result.stderr or result.stdout).strip().splitlines()
        raise ToolError(f"{name} {args[0] if args else ''} failed: {' / '.join(message) or 'no output'}")
