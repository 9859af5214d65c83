"""Status: per tag, is it sealed, for whom, and is the plaintext still reachable.

Read-only: it reads tag links, manifests and revision links, and compares
what each sealed manifest records (team, KMS key, recipient fingerprints,
policy version) with the current policy, and, when TUF is on, the target
the team's stored role lists for each sealed tag with the manifest the tag
points at (unverified: ``regseal verify`` checks signatures and freshness).
A tag that cannot be read is
``broken`` with the reason in ``detail``: which link or manifest is missing
or unreadable, named by digest and storage key.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass

from regseal import manifest as mf
from regseal import ocicrypt
from regseal.digest import Digest
from regseal.errors import ManifestError, NotFoundError, RegsealError
from regseal.inventory import RepositoryInventory
from regseal.layout import decode_link
from regseal.policy import Policy
from regseal.seal import MAX_INDEX_DEPTH, Sealer, check_encrypted_layers, sealed_for
from regseal.targetlog import StoredTargets, TufTargetLog


class State(enum.Enum):
    SEALED = "sealed"  # sealed by regseal
    ENCRYPTED = "encrypted"  # encrypted by someone else; left alone
    PLAINTEXT = "plaintext"  # some layer is still plaintext
    REFUSED = "refused"  # the seal refuses it as bad input; detail says why
    NO_LAYERS = "no-layers"  # an image with no layer held in the registry
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
    tuf_target: str | None = None
    """For a sealed tag with TUF on: ``current`` (the target is the manifest
    the tag points at), ``stale: <digest>`` (it names another one),
    ``missing``, or ``unreadable: <why>``; as stored, not verified."""
    detail: str = ""

    def to_json(self) -> dict[str, object]:
        return {k: v for k, v in asdict(self).items() if v not in (None, "", ())}


def tag_status(
    sealer: Sealer,
    repository: str,
    tag: str,
    policy: Policy,
    targets: StoredTargets | None = None,
) -> TagStatus:
    """The state of one tag.

    Args:
        sealer: reads the registry bucket.
        repository: the repository.
        tag: the tag.
        policy: the current policy.
        targets: the stored TUF targets (None: TUF is off, or not asked).
    """
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
    base = _replace(base, digest=digest.value)
    try:
        parsed = sealer.read_manifest(repository, digest)
    except RegsealError as exc:
        return _replace(base, detail=_manifest_problem(sealer, repository, digest, exc))
    if parsed is None:
        return _replace(
            base,
            state=State.NOT_IMAGE.value,
            detail=_what_it_is(sealer, digest),
        )
    claimed_by = _team_name(policy, repository)
    try:
        if isinstance(parsed, mf.ImageManifest):
            check_encrypted_layers(parsed, f"manifest {digest} of {repository}")
        plaintext_left = sealer.has_plaintext(repository, parsed)
    except ManifestError as exc:
        # What the seal would refuse: not sealed, and the reason.
        return _replace(
            base, state=State.REFUSED.value, team=claimed_by, detail=str(exc)
        )
    if plaintext_left:
        # The tag itself serves the plaintext.
        return _replace(
            base,
            state=State.PLAINTEXT.value,
            team=claimed_by,
            plaintext_digest=digest.value,
            plaintext_reachable=True,
        )
    annotations = parsed.annotations
    if mf.ANNOTATION_PLAINTEXT not in annotations:
        schemes = _schemes(sealer, repository, parsed)
        if schemes is None:
            return _replace(
                base,
                state=State.NO_LAYERS.value,
                detail=_no_layers(parsed),
            )
        return _replace(base, state=State.ENCRYPTED.value, detail=schemes)
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
        team=team_name,
        kms_key=annotations.get(mf.ANNOTATION_KMS_KEY),
        recipients=tuple(r.partition("=")[0] for r in recipients),
        policy_version=annotations.get(mf.ANNOTATION_POLICY_VERSION),
        current=current,
        plaintext_digest=plaintext.value,
        plaintext_reachable=sealer.store.exists(
            sealer.layout.revision_link(repository, plaintext)
        ),
        tuf_target=(
            None
            if targets is None or team_name is None
            else _tuf_target(sealer, targets, team_name, repository, tag, digest)
        ),
    )


def statuses(
    sealer: Sealer, inventories: list[RepositoryInventory], policy: Policy
) -> list[TagStatus]:
    """The state of every tag of ``inventories``, with TUF targets if TUF is on."""
    targets = (
        sealer.targets.stored() if isinstance(sealer.targets, TufTargetLog) else None
    )
    return [
        tag_status(sealer, inventory.name, tag, policy, targets)
        for inventory in inventories
        for tag in sorted(inventory.tags)
    ]


def _tuf_target(
    sealer: Sealer,
    targets: StoredTargets,
    team: str,
    repository: str,
    tag: str,
    digest: Digest,
) -> str:
    try:
        target = targets.find(team, repository, tag)
        if target is None:
            return "missing"
        size = sealer.store.head(sealer.layout.blob_data(digest))
    except RegsealError as exc:
        return f"unreadable: {exc}"
    named = target.hashes.get("sha256")
    if named == digest.hex and size is not None and target.length == size.size:
        return "current"
    return f"stale: sha256:{named} ({target.length} bytes)"


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


def _team_name(policy: Policy, repository: str) -> str | None:
    """The team the policy gives the repository, whether or not its seal works."""
    try:
        team = policy.team_for(repository)
    except RegsealError:
        return None  # "unmatched": "fail"; the seal says so itself
    return team.name if team is not None else None


def _what_it_is(sealer: Sealer, digest: Digest) -> str:
    """What a manifest regseal leaves alone is, for the status line."""
    key = sealer.layout.blob_data(digest)
    try:
        parsed = mf.parse(sealer.store.get(key).data, key)
    except mf.UnsupportedManifest as exc:
        return f"not an image: {exc}"
    except RegsealError as exc:
        return f"unreadable: {exc}"
    if isinstance(parsed, mf.ImageIndex):
        return "index"
    artifact_type = parsed.raw.get("artifactType")
    if isinstance(artifact_type, str):
        return f"artifact {artifact_type}"
    layers = sorted({x.media_type for x in parsed.layers})
    return (
        f"artifact: config {parsed.config.media_type}, layers "
        f"{', '.join(layers) or 'none'}"
    )


def _schemes(
    sealer: Sealer,
    repository: str,
    parsed: mf.ImageManifest | mf.ImageIndex,
    depth: int = 0,
) -> str | None:
    """The key annotations of the encrypted layers; None if no layer is."""
    if isinstance(parsed, mf.ImageIndex):
        found: set[str] = set()
        encrypted = False
        for child in parsed.manifests:
            if child.media_type not in mf.MANIFEST_TYPES | mf.INDEX_TYPES:
                continue
            loaded = sealer.load_manifest(repository, child.digest)
            if loaded is None or depth >= MAX_INDEX_DEPTH:
                continue
            schemes = _schemes(sealer, repository, loaded, depth + 1)
            if schemes is not None:
                encrypted = True
                found.update(x for x in schemes.removeprefix("keys: ").split(", ") if x)
        return (
            ("keys: " + ", ".join(sorted(found)) if found else "")
            if encrypted
            else None
        )
    layers = [
        x for x in parsed.layers if ocicrypt.is_encrypted_media_type(x.media_type)
    ]
    if not layers:
        return None
    keys = {
        k.removeprefix(ocicrypt.KEYS_ANNOTATION_PREFIX)
        for layer in layers
        for k in layer.annotations
        if k.startswith(ocicrypt.KEYS_ANNOTATION_PREFIX)
    }
    return "keys: " + ", ".join(sorted(keys)) if keys else ""


def _no_layers(parsed: mf.ImageManifest | mf.ImageIndex) -> str:
    if isinstance(parsed, mf.ImageIndex):
        return "index whose images hold no layers in the registry"
    if not parsed.layers:
        return "image manifest with no layers"
    return "only layers stored outside the registry (urls or foreign)"


def _replace(status: TagStatus, **changes: object) -> TagStatus:
    from dataclasses import replace

    return replace(status, **changes)  # type: ignore[arg-type]
