"""The states of one model's updater and the moves between them (device_client.updater).

    idle -> downloading -> applying -> verifying -> committed -> idle
    any step -> error (the running model untouched); error -> idle or downloading on a new manifest
"""

from __future__ import annotations

import enum


class State(enum.Enum):
    """Where one model's update stands."""

    IDLE = "idle"
    DOWNLOADING = "downloading"
    APPLYING = "applying"
    VERIFYING = "verifying"
    COMMITTED = "committed"
    ERROR = "error"


#: The states each state may move to.
NEXT = {
    State.IDLE: {State.IDLE, State.DOWNLOADING, State.APPLYING, State.ERROR},
    State.DOWNLOADING: {State.IDLE, State.DOWNLOADING, State.APPLYING, State.ERROR},
    # A release waiting to be applied may still be superseded by a newer manifest.
    State.APPLYING: {State.IDLE, State.DOWNLOADING, State.APPLYING, State.VERIFYING, State.ERROR},
    State.VERIFYING: {State.COMMITTED, State.ERROR},
    State.COMMITTED: {State.IDLE},
    State.ERROR: {State.IDLE, State.DOWNLOADING, State.APPLYING, State.ERROR},
}
