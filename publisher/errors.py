"""The publisher's one exception hierarchy.

Every error carries a stable short ``code`` and a message that tells an operator what to change.
All subclass ValueError, so callers who only care that an input was bad can catch that.
"""

from __future__ import annotations


class PublisherError(ValueError):
    """Base of every error the publisher raises for its inputs or configuration."""

    code = "publisher-error"


class ConfigError(PublisherError):
    """A configuration value is out of range or contradicts another one."""

    code = "bad-config"


class UnknownModelError(ConfigError):
    """A model id that no device or release the command looked at knows (a likely typo)."""

    code = "unknown-model"


class BrokerUrlError(ConfigError):
    """A broker address that is not ``mqtts://HOST:PORT`` or ``mqtt://HOST:PORT``."""

    code = "bad-broker-url"


class DataError(PublisherError):
    """Training or evaluation data is missing, malformed or does not fit the model."""

    code = "bad-data"


class ModelError(PublisherError):
    """The model cannot be built, loaded or factorised as asked."""

    code = "bad-model"


class TrustError(ConfigError):
    """A trust directory that is missing or out of order, or a root change that names keys the root lacks."""

    code = "bad-trust"


class SigningKeyError(PublisherError):
    """The signing key file is not the Ed25519 private key releases are signed with."""

    code = "bad-key"


class BudgetError(PublisherError):
    """No update fits the requested byte budget."""

    code = "over-budget"


class TargetError(BudgetError):
    """No update within the byte limit reached the target accuracy on the validation split."""

    code = "target-not-reached"


class ExportError(PublisherError):
    """A model cannot be written as a TFLite file as asked (bad input shape, graph or weights)."""

    code = "export-failed"


class UnsupportedLayerError(ExportError):
    """The model uses layers the TFLite exporter cannot convert; ``layers`` names each one."""

    code = "unsupported-layer"

    def __init__(self, layers: list[str]) -> None:
        self.layers = tuple(layers)
        super().__init__(
            f"cannot export to TFLite: {'; '.join(self.layers)}. Replace these layers with supported ones "
            "(see docs/tflite.md) or export with another converter and bind by content."
        )


class PublishError(PublisherError):
    """Talking to the MQTT broker failed: publishing a release, pruning, or reading fleet status."""

    code = "publish-failed"


class BrokerUnreachableError(PublishError):
    """No connection to the broker (address, port, TLS certificate), or the connection was lost."""

    code = "broker-unreachable"


class CredentialsRefusedError(PublishError):
    """The broker refused the username or password."""

    code = "bad-credentials"


class NotAuthorizedError(PublishError):
    """The broker's ACL refused a publish or subscription for this user."""

    code = "not-authorized"


class BrokerRefusedError(PublishError):
    """The broker refused a message for another reason (for example a packet above its size limit)."""

    code = "broker-refused"


class BrokerTimeoutError(PublishError):
    """The broker did not acknowledge in time."""

    code = "timeout"


class ReleaseInputError(PublishError):
    """The update or model file cannot be published as asked (for example no target sha256)."""

    code = "bad-update"


class ReleaseRefusedError(PublishError):
    """The broker's retained releases say this release must not be published (publisher.release.guardrails)."""

    code = "release-refused"


class VersionNotNewerError(ReleaseRefusedError):
    """The version is below the current release's: devices would refuse it as old."""

    code = "not-newer"


class NotLatestError(ReleaseRefusedError):
    """A rollout names a version that is not the model's latest release on the broker."""

    code = "not-latest"


class VersionTakenError(ReleaseRefusedError):
    """The current version is already published with another payload."""

    code = "version-taken"


class UnknownBaseError(ReleaseRefusedError):
    """A delta for a model file no retained release produces, so no device runs it."""

    code = "unknown-base"


class UntrustedKeyError(ReleaseRefusedError):
    """Signed by another key than the current release: devices trust the one they were given."""

    code = "untrusted-key"


class OtherFleetError(ReleaseRefusedError):
    """The release names another fleet than the broker's current release: its devices would refuse it."""

    code = "other-fleet"


class ClockBehindError(ReleaseRefusedError):
    """The release would be signed earlier than the current release of the same version (this host's clock
    is behind): devices would take it for a replay."""

    code = "clock-behind"


class NewModelError(ReleaseRefusedError):
    """The first release of a model id the broker has never seen, without --new-model (a typo?)."""

    code = "new-model"


class CurrentReleaseError(ReleaseRefusedError):
    """Deleting the current release or one its index lists (devices download or catch up through them),
    without --force."""

    code = "in-use"
