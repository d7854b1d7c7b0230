"""The command lines the README and docs (device, mqtt, security) show parse: every `rankcast ...` line of their shell
blocks is accepted by the real argument parser (flags, choices, required options), so a newcomer copying
them gets no usage error."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from rankcast.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = ("README.md", "docs/device.md", "docs/mqtt.md", "docs/security.md")
#: What the documents' $B stands for: the broker options they define once.
BROKER = "--broker mqtts://localhost:8883 --username ops --password-file ops.password --cafile ca.crt"


def _command_lines(document: str) -> list[str]:
    """Every `rankcast ...` command in the document's ```sh blocks, continuation lines joined, comments cut."""
    text = (ROOT / document).read_text()
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            command = line.split(" #", 1)[0].strip()
            if command.startswith("rankcast "):
                lines.append(command)
    return lines


COMMANDS = [(document, line) for document in DOCUMENTS for line in _command_lines(document)]


def test_the_documents_show_commands() -> None:
    assert len([c for c in COMMANDS if c[0] == "README.md"]) >= 20


@pytest.mark.parametrize(("document", "line"), COMMANDS, ids=[f"{d}:{line[:60]}" for d, line in COMMANDS])
def test_a_documented_command_line_parses(document: str, line: str, capsys) -> None:
    argv = shlex.split(line.replace("$B", BROKER))[1:]
    try:
        build_parser().parse_args(argv)
    except SystemExit as exit_:
        pytest.fail(f"{document}: `{line}` does not parse (exit {exit_.code}): {capsys.readouterr().err.strip()}")
