"""Status: per tag, is it sealed, for whom, and is the plaintext still reachable.

Read-only: it reads tag links, manifests and revision links, and compares
what each sealed manifest records (team, KMS key, recipient fingerprints,
policy version) with the current policy. A tag that cannot be read is
``broken`` with the reason in ``detail``: which link or manifest is missing
or unreadable, named by digest and storage key.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass

from regseal import manifest as mf
from regseal import ocicrypt
from regseal.digest import Digest
from regseal.errors import NotFoundError, RegsealError
from regseal.inventory import RepositoryInventory
from regseal.layout import decode_link
from regseal.policy import Policy
from regseal.seal import Sealer, sealed_for


class State(enum.Enum):
    SEALED = "sealed"  # sealed by regseal
    ENCRYPTED = "encrypted"  # encrypted by someone else; left alone
    PLAINTEXT = "plaintext"  # some layer is still plaintext
    NOT_IMAGE = "not-image"  # an artifact or a kind regseal leaves alone
    BROKEN = "broken"  # the tag cannot be read


@dataclass(frozen=True)
class TagStatus:
    """One tag's state, as ``regseal status`` prints it."""

    repository: str
    tag: str
    state: str
    digest: str | None = None
    team: str | None = None
    kms_key: str | None = None
    recipients: tuple[str, ...] = ()
    policy_version: str | None = None
    current: bool | None = None  # sealed for the current policy's keys
    plaintext_digest: str | None = None
    plaintext_reachable: bool | None = None
    tuf_target: str = "not tracked"
    detail: str = ""

    def to_json(self) -> dict[str, object]:
        return {k: v for k, v in asdict(self).items() if v not in (None, "", ())}


def tag_status(sealer: Sealer, repository: str, tag: str, policy: Policy) -> TagStatus:
    """The state of one tag."""
    base = TagStatus(repository, tag, State.BROKEN.value)
    key = sealer.layout.tag_link(repository, tag)
    try:
        link = sealer.store.get(key).data
    except NotFoundError:
        return _replace(base, detail=f"tag link {key} missing")
    except RegsealError as exc:
        return _replace(base, detail=f"tag link {key} unreadable: {exc}")
    try:
        digest = decode_link(link, key)
    except RegsealError as exc:
        return _replace(base, detail=f"tag link unreadable: {exc}")
    try:
        parsed = sealer.load_manifest(repository, digest)
    except RegsealError as exc:
        return _replace(
            base,
            digest=digest.value,
            detail=_manifest_problem(sealer, repository, digest, exc),
        )
    if parsed is None:
        return _replace(base, state=State.NOT_IMAGE.value, digest=digest.value)
    if sealer.has_plaintext(repository, parsed):
        # The tag itself serves the plaintext.
        return _replace(
            base,
            state=State.PLAINTEXT.value,
            digest=digest.value,
            plaintext_digest=digest.value,
            plaintext_reachable=True,
        )
    annotations = parsed.annotations
    if mf.ANNOTATION_PLAINTEXT not in annotations:
        return _replace(
            base,
            state=State.ENCRYPTED.value,
            digest=digest.value,
            detail=_schemes(parsed),
        )
    plaintext = Digest.parse(annotations[mf.ANNOTATION_PLAINTEXT])
    recipients = tuple(
        item
        for item in annotations.get(mf.ANNOTATION_RECIPIENTS, "").split(",")
        if item
    )
    team_name = annotations.get(mf.ANNOTATION_TEAM)
    current = None
    try:
        team = policy.team_for(repository)
    except RegsealError:
        team = None
    if team is not None:
        current = sealed_for(annotations, team)
    return _replace(
        base,
        state=State.SEALED.value,
        digest=digest.value,
        team=team_name,
        kms_key=annotations.get(mf.ANNOTATION_KMS_KEY),
        recipients=tuple(r.partition("=")[0] for r in recipients),
        policy_version=annotations.get(mf.ANNOTATION_POLICY_VERSION),
        current=current,
        plaintext_digest=plaintext.value,
        plaintext_reachable=sealer.store.exists(
            sealer.layout.revision_link(repository, plaintext)
        ),
    )


def statuses(
    sealer: Sealer, inventories: list[RepositoryInventory], policy: Policy
) -> list[TagStatus]:
    return [
        tag_status(sealer, inventory.name, tag, policy)
        for inventory in inventories
        for tag in sorted(inventory.tags)
    ]


def _manifest_problem(
    sealer: Sealer, repository: str, digest: Digest, error: RegsealError
) -> str:
    """Why the manifest a tag points at cannot be read, for the status line."""
    revision = sealer.layout.revision_link(repository, digest)
    blob = sealer.layout.blob_data(digest)
    try:
        if not sealer.store.exists(revision):
            return f"manifest {digest} not in the repository (no {revision})"
        if not sealer.store.exists(blob):
            return f"manifest {digest} missing (no {blob})"
    except RegsealError as exc:
        return f"manifest {digest} unreadable: {exc}"
    return f"manifest {digest} unreadable: {error}"


def _schemes(parsed: mf.ImageManifest | mf.ImageIndex) -> str:
    if not isinstance(parsed, mf.ImageManifest):
        return ""
    keys = {
        k.removeprefix(ocicrypt.KEYS_ANNOTATION_PREFIX)
        for layer in parsed.layers
        for k in layer.annotations
        if k.startswith(ocicrypt.KEYS_ANNOTATION_PREFIX)
    }
    return "keys: " + ", ".join(sorted(keys)) if keys else ""


def _replace(status: TagStatus, **changes: object) -> TagStatus:
    from dataclasses import replace

    return replace(status, **changes)  # type: ignore[arg-type]
