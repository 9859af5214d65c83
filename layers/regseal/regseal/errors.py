"""The exception hierarchy: one root, one branch per concept.

Messages name the input and what was expected. Integrity failures are the
exception: :class:`IntegrityError` carries no detail, so that nothing about
keys or plaintext leaks through an error message.
"""


class RegsealError(Exception):
    """Root of every error regseal raises on purpose."""


class FormatError(RegsealError):
    """Input does not follow a format regseal reads (digest, manifest, JSON)."""


class DigestError(FormatError):
    """A digest string is malformed or uses an unsupported algorithm."""


class ManifestError(FormatError):
    """A manifest or index cannot be sealed as it is."""


class OcicryptError(FormatError):
    """Encryption metadata (options, annotations) is malformed."""


class IntegrityError(RegsealError):
    """Authentication of encrypted data failed. Deliberately uninformative."""

    def __init__(self, message: str = "integrity check failed") -> None:
        super().__init__(message)


class KeyWrapError(RegsealError):
    """A layer key could not be wrapped or unwrapped (JWE, KMS)."""


class AccessDeniedError(KeyWrapError):
    """KMS refused the operation for this key and encryption context."""


class PolicyError(RegsealError):
    """The sealing policy is invalid or names something that does not exist."""


class EventError(FormatError):
    """A storage event has a shape regseal does not understand."""


class StorageError(RegsealError):
    """The object store failed or holds something unexpected."""


class NotFoundError(StorageError):
    """An object the registry layout requires does not exist."""


class PreconditionFailedError(StorageError):
    """A conditional write lost: the object changed since it was read."""


class RetryableError(RegsealError):
    """The state is not ready yet; delivering the event again may succeed."""


class LocalStackError(RegsealError):
    """The local stack could not start, or a process it runs stopped on its own."""


class TufError(RegsealError):
    """TUF metadata cannot be built, signed or trusted as the operation needs."""


class VerificationError(TufError):
    """A client-side check failed: metadata, target or manifest is not trusted."""


class TargetRollbackError(TufError):
    """A target would move back to a manifest sealed before the one it names.

    Attributes:
        path: the target path.
        current: digest of the sealed manifest the target names now.
        refused: digest of the older sealed manifest that was refused.
        why: what makes ``refused`` older, in words.
    """

    def __init__(self, path: str, current: str, refused: str, why: str) -> None:
        super().__init__(
            f"{path}: refusing to move the target from {current} back to {refused}: "
            f"{why}"
        )
        self.path = path
        self.current = current
        self.refused = refused
        self.why = why


class InvariantError(RegsealError):
    """A registry breaks one or more of regseal's invariants (regseal.invariants)."""


class RegistryError(RegsealError):
    """The registry's HTTP API (OCI distribution) refused a request or failed.

    Attributes:
        status: the HTTP status, or None when no response arrived.
        codes: the distribution error codes of the response body
            (``MANIFEST_UNKNOWN``, ``DENIED``, ...), in order.
    """

    def __init__(
        self, message: str, *, status: int | None = None, codes: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message)
        self.status = status
        self.codes = codes


class RegistryAuthError(RegistryError):
    """The registry or its token service refused the credentials or the scope."""


class RegistryNotFoundError(RegistryError):
    """The registry has no such repository, manifest, blob or upload."""


class RegistryConflictError(RegistryError):
    """The registry's state forbids the change (an immutable tag, a tag that
    still points at a manifest to be deleted, a deletion the registry refuses)."""
