"""The codec's one exception hierarchy.

Every error carries a stable short ``code`` (for example ``"bad-signature"``) that devices report in
their status, and a message that tells an operator what happened and what to do. All errors also
subclass ValueError, so callers who only care that the input was bad can catch that.
"""

from __future__ import annotations


class UpdateError(ValueError):
    """Base of every error the codec raises for an update, a manifest or a model file."""

    code = "update-error"


class FormatError(UpdateError):
    """Bytes that do not follow docs/format.md: refuse them, whoever sent them."""

    code = "bad-format"


class LimitError(UpdateError):
    """A declared or actual size exceeds a configured limit; nothing larger was allocated."""

    code = "over-limit"


class IntegrityError(UpdateError):
    """A length or sha256 does not match what the signed manifest declares."""

    code = "bad-hash"


class ChunkError(IntegrityError):
    """A chunk's index, length or sha256 does not match the manifest."""

    code = "bad-chunk"


class SignatureError(UpdateError):
    """The manifest's Ed25519 signature does not verify."""

    code = "bad-signature"


class UnknownKeyError(SignatureError):
    """The manifest is signed by a key the device does not trust."""

    code = "unknown-key"


class RevokedKeyError(SignatureError):
    """The document is signed by a key the device's trust root revoked."""

    code = "revoked-key"


class KeyNotAllowedError(SignatureError):
    """The signing key is trusted, but the trust root does not let it sign for this model."""

    code = "key-not-allowed"


class ThresholdError(SignatureError):
    """Fewer distinct trusted keys signed the document than its threshold asks for."""

    code = "below-threshold"


class RootError(UpdateError):
    """A trust root that does not follow the one the device holds: not the next version, or a rollback."""

    code = "bad-root"


class RollbackError(UpdateError):
    """The release is not newer than the model the device runs (replay or rollback attempt)."""

    code = "old-version"


class BaseMismatchError(UpdateError):
    """The release applies to another model file than the one the device runs."""

    code = "wrong-base"


class WrongModelError(UpdateError):
    """The manifest is for another model id than the one it arrived for (misrouted or replayed)."""

    code = "wrong-model"


class WrongFleetError(UpdateError):
    """The manifest names another fleet than the device's (a release signed for another broker)."""

    code = "wrong-fleet"


class ModelMismatchError(UpdateError):
    """A record names a tensor the model lacks, or its shape differs from the model's."""

    code = "model-mismatch"


class ExpiredError(UpdateError):
    """The manifest's expiry time has passed (freeze attack, or a stale release)."""

    code = "expired"


class NonFiniteError(UpdateError):
    """Scales, values or the updated weights contain NaN or Inf."""

    code = "non-finite"


class FloatEnvironmentError(UpdateError):
    """The process's floating-point environment flushes subnormals (or rounds otherwise) and cannot be reset."""

    code = "fp-environment"
