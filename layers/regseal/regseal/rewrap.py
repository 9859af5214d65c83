"""Re-wrap: seal an image for new recipients or a new KMS key, blobs untouched.

When a team's recipients or KMS key change in the policy, its sealed images
are still wrapped for the old ones. Re-wrapping opens each layer's key (with
the operator's KMS access or a JWE private key, see :mod:`regseal.layerkeys`),
wraps it again for the team as the policy now says, and writes a new
manifest whose layers keep their digests: only annotations change. The tag
moves with the same conditional write as a seal, and the old sealed
manifest is unlinked so that it cannot be pulled by digest.

NOTE: re-wrapping revokes nothing from a recipient who already read a layer
key: the key itself is unchanged. A removed recipient loses access only to
images re-keyed with fresh keys: ``Rewrapper(..., rekey=True)`` (``regseal
seal --rekey``) re-encrypts every layer (see :mod:`regseal.rekey`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

from regseal import manifest as mf
from regseal import ocicrypt
from regseal.digest import Digest
from regseal.errors import KeyWrapError, ManifestError, NotFoundError
from regseal.layerkeys import LayerKeys
from regseal.layout import decode_link
from regseal.policy import Policy, Team
from regseal.rekey import reencrypt_layer, rekeyed_descriptor
from regseal.seal import (
    Outcome,
    SealedManifest,
    Sealer,
    SealResult,
    sealed_annotations,
    sealed_for,
)
from regseal.writeback import TagState

logger = logging.getLogger(__name__)


@dataclass
class _Plan:
    """What a re-wrap will write, collected before writing any of it."""

    manifests: list[tuple[Digest, SealedManifest]] = field(default_factory=list)
    layers: list[tuple[Digest, mf.Descriptor]] = field(default_factory=list)


class Rewrapper:
    """Re-wraps sealed images of one bucket for the current policy.

    Args:
        sealer: the bucket, its layout, writer and KMS wrapper (which wraps
            for the new key).
        keys: opens the existing layer keys.
        rekey: re-encrypt with fresh layer keys instead of re-wrapping.
        required_keys: keys the caller named (``--key``) that must open each
            image's layer keys, even when the image needs no re-wrap: a wrong
            key is reported instead of passing unnoticed.
    """

    def __init__(
        self,
        sealer: Sealer,
        keys: LayerKeys,
        *,
        rekey: bool = False,
        required_keys: LayerKeys | None = None,
    ) -> None:
        self.sealer = sealer
        self.keys = keys
        self.rekey = rekey
        self.required_keys = required_keys

    def rewrap_tag(
        self, repository: str, tag: str, *, force: bool = False, dry_run: bool = False
    ) -> SealResult:
        """Re-wrap the sealed image a tag points at, if its keys are not current."""
        sealer = self.sealer
        key = sealer.layout.tag_link(repository, tag)
        base = SealResult(Outcome.SKIPPED, key, repository=repository, reference=tag)
        try:
            current = sealer.store.get(key)
        except NotFoundError:
            return replace(base, reason="tag no longer exists")
        digest = decode_link(current.data, key)
        parsed = sealer.load_manifest(repository, digest)
        if parsed is None or mf.ANNOTATION_PLAINTEXT not in parsed.annotations:
            return replace(base, reason="not sealed by regseal")
        policy = sealer.policies.get()
        team = policy.team_for(repository)
        if team is None:
            return replace(base, reason="no team claims the repository")
        if self.required_keys is not None:
            self._check_required_keys(repository, parsed, depth=0)
        if not force and not self.rekey and sealed_for(parsed.annotations, team):
            return replace(base, reason="already wrapped for the current keys")
        if dry_run:
            return replace(base, outcome=Outcome.PENDING, reason=f"team {team.name}")

        # Every key is opened and wrapped before the first write, so a layer
        # no key opens leaves the registry as it was.
        plan = _Plan()
        rewrapped = self._rewrap(repository, parsed, team, policy, plan, depth=0)
        for plaintext_digest, manifest in plan.manifests:
            sealer.writer.write_manifest(
                repository, manifest.digest, manifest.data, manifest.media_type
            )
            sealer.write_record(repository, plaintext_digest, manifest, policy, 0)
        for plaintext_digest, descriptor in plan.layers:
            sealer.write_layer_record(repository, plaintext_digest, descriptor, policy)
        moved = sealer.writer.move_tag(
            repository,
            tag,
            rewrapped.digest,
            rewrapped.data,
            rewrapped.media_type,
            TagState(digest, current.etag),
        )
        result = replace(
            base,
            outcome=Outcome.SEALED,
            reason="re-keyed" if self.rekey else "re-wrapped",
            plaintext_digest=parsed.annotations[mf.ANNOTATION_PLAINTEXT],
            sealed_digest=rewrapped.digest.value,
        )
        if not moved:
            return replace(result, outcome=Outcome.SUPERSEDED, reason="tag moved")
        self._retire(repository, parsed)
        return result

    def _check_required_keys(
        self, repository: str, parsed: mf.ImageManifest | mf.ImageIndex, depth: int
    ) -> bool:
        """Open the first encrypted layer with the required keys.

        Returns:
            Whether an encrypted layer was found (and opened).

        Raises:
            KeyWrapError: the required keys cannot open it.
        """
        assert self.required_keys is not None
        if isinstance(parsed, mf.ImageIndex):
            if depth >= 4:
                raise ManifestError(f"index {parsed.digest}: nested too deep")
            for child in parsed.manifests:
                if child.media_type not in mf.MANIFEST_TYPES | mf.INDEX_TYPES:
                    continue
                loaded = self.sealer.load_manifest(repository, child.digest)
                if loaded is not None and self._check_required_keys(
                    repository, loaded, depth + 1
                ):
                    return True
            return False
        for layer in parsed.layers:
            if ocicrypt.ANNOTATION_PUBOPTS not in layer.annotations:
                continue
            _, wrapped = ocicrypt.parse_layer_annotations(layer.annotations)
            where = f"layer {layer.digest} of {repository}"
            try:
                self.required_keys.unwrap(wrapped, where, repository)
            except KeyWrapError as exc:
                raise KeyWrapError(
                    f"the --key private keys cannot open the layer keys: {exc}"
                ) from None
            return True
        return False

    def _rewrap(
        self,
        repository: str,
        parsed: mf.ImageManifest | mf.ImageIndex,
        team: Team,
        policy: Policy,
        plan: _Plan,
        depth: int,
    ) -> SealedManifest:
        sealer = self.sealer
        plaintext = Digest.parse(parsed.annotations[mf.ANNOTATION_PLAINTEXT])
        annotations = sealed_annotations(parsed.annotations, plaintext, team, policy)
        if isinstance(parsed, mf.ImageIndex):
            if depth >= 4:
                raise ManifestError(f"index {parsed.digest}: nested too deep")
            children = []
            for child in parsed.manifests:
                loaded = (
                    sealer.load_manifest(repository, child.digest)
                    if child.media_type in mf.MANIFEST_TYPES | mf.INDEX_TYPES
                    else None
                )
                if loaded is None or mf.ANNOTATION_PLAINTEXT not in loaded.annotations:
                    children.append(child)
                    continue
                new = self._rewrap(repository, loaded, team, policy, plan, depth + 1)
                children.append(replace(child, digest=new.digest, size=len(new.data)))
            data = mf.build_index(parsed, children, annotations)
            sealed = SealedManifest(Digest.of(data), data, mf.OCI_INDEX)
        else:
            layers = [
                self._rewrap_layer(repository, layer, team, plan)
                for layer in parsed.layers
            ]
            data = mf.build_manifest(parsed, parsed.config, layers, annotations)
            sealed = SealedManifest(Digest.of(data), data, mf.OCI_MANIFEST)
        plan.manifests.append((plaintext, sealed))
        return sealed

    def _rewrap_layer(
        self, repository: str, layer: mf.Descriptor, team: Team, plan: _Plan
    ) -> mf.Descriptor:
        if ocicrypt.ANNOTATION_PUBOPTS not in layer.annotations:
            return layer  # not encrypted (foreign or pass-through layer)
        _, wrapped = ocicrypt.parse_layer_annotations(layer.annotations)
        options = self.keys.unwrap(
            wrapped, f"layer {layer.digest} of {repository}", repository
        )
        if self.rekey:
            sealer = self.sealer
            encrypted, fresh = reencrypt_layer(
                sealer.store,
                sealer.layout,
                repository,
                layer,
                options,
                f"{sealer.settings.state_prefix}staging/",
                sealer.settings.part_size,
            )
            keys = sealer.wrap_layer_keys(repository, fresh, team)
            rekeyed = rekeyed_descriptor(layer, encrypted, keys)
            plan.layers.append((Digest.parse(str(fresh.digest)), rekeyed))
            return rekeyed
        annotations = {
            k: v
            for k, v in layer.annotations.items()
            if not k.startswith(ocicrypt.KEYS_ANNOTATION_PREFIX)
        }
        annotations.update(self.sealer.wrap_layer_keys(repository, options, team))
        rewrapped = replace(layer, annotations=annotations)
        plan.layers.append((Digest.parse(str(options.digest)), rewrapped))
        return rewrapped

    def _retire(self, repository: str, old: mf.ImageManifest | mf.ImageIndex) -> None:
        """Unlink the superseded sealed manifest: its keys are for old recipients."""
        sealer = self.sealer
        digests = {old.digest}
        if isinstance(old, mf.ImageIndex):
            digests.update(c.digest for c in old.manifests)
        tag_index = sealer.tag_index(repository)
        still = sealer.still_tagged(repository, digests, tag_index)
        retired = sorted(digests - still)
        old_layers: set[Digest] = set()
        for digest in retired:
            manifest = (
                old
                if digest == old.digest
                else sealer.load_manifest(repository, digest)
            )
            if self.rekey and isinstance(manifest, mf.ImageManifest):
                old_layers.update(layer.digest for layer in manifest.layers)
            sealer.writer.unlink_manifest(
                repository, digest, sorted(tag_index.get(digest, ()))
            )
        if old_layers:
            # Re-keyed: the old ciphertext opens with the old keys, which a
            # removed recipient may hold; unlink what nothing else uses.
            in_use = set().union(*sealer._repository_references(repository).values())
            for digest in sorted(old_layers - in_use):
                sealer.writer.unlink_layer(repository, digest)
