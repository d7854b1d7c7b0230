"""The fleet simulator's one exception hierarchy; each error has a stable ``code`` for `rankcast`'s error
line and a message that says what to change. All subclass ValueError."""

from __future__ import annotations


class FleetError(ValueError):
    """Base of every error the fleet simulator raises for its inputs or configuration."""

    code = "fleet-error"


class FleetConfigError(FleetError):
    """A fleet's size, links, clock or limits are out of range."""

    code = "bad-fleet-config"


class LinkProfileError(FleetError):
    """A link profile or a --link specification is invalid; the message says which and why."""

    code = "bad-link-profile"


class FleetInputError(FleetError):
    """The model files or the update cannot make a fleet run; the message says what to fix."""

    code = "bad-fleet-input"
