"""OCI documents serialized exactly as skopeo 1.9.3 writes them.

``regseal decrypt`` must write the same bytes as ``skopeo copy
--decryption-key``, so this module reproduces two things of the Go side:

- Go's ``encoding/json``: compact output, map keys sorted, struct fields in
  declaration order, ``omitempty`` fields left out when empty, ``<``, ``>``,
  ``&``, U+2028 and U+2029 escaped as ``\\u00XX``/``\\u2028``, other control
  characters as ``\\u00XX`` except ``\\n``, ``\\r`` and ``\\t``, and invalid
  UTF-16 (lone surrogates) as ``\\ufffd``;
- the struct shapes of the image-spec version vendored in skopeo 1.9.3
  (containers/image 5.23), measured by decrypting crafted images with the
  Debian package and reading what it wrote:

  - descriptor: ``mediaType``, ``digest``, ``size``, ``urls``,
    ``annotations``, ``data``, ``platform``, ``artifactType``; any other
    member is dropped;
  - platform: ``architecture``, ``os``, ``os.version``, ``os.features``,
    ``variant`` (``features`` is dropped);
  - image manifest: ``schemaVersion``, ``mediaType``, ``config``, ``layers``,
    ``subject``, ``annotations`` (``artifactType`` and unknown members are
    dropped);
  - layers of a manifest whose layers changed are rebuilt from
    ``mediaType``, ``digest``, ``size``, ``urls`` and ``annotations`` only
    (c/image ``UpdateLayerInfos``);
  - an index copied with ``--all`` is rebuilt from its components: the OCI
    index media type, then per manifest ``mediaType``, ``digest``, ``size``,
    ``urls``, ``annotations``, ``platform``, then the index annotations;
  - a layout's ``index.json``: ``schemaVersion``, ``mediaType``,
    ``manifests``, ``annotations``.

Public API: :func:`dumps`, :func:`descriptor`, :func:`platform`,
:func:`layer_descriptor`, :func:`manifest`, :func:`index_from_components`,
:func:`layout_index`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from typing import Any

from regseal.errors import ManifestError

OCI_INDEX = "application/vnd.oci.image.index.v1+json"

_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_HTML_AND_SEPARATORS = frozenset("<>&\u2028\u2029")


def _string(text: str) -> str:
    out = ['"']
    for char in text:
        code = ord(char)
        if char in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[char])
        elif code < 0x20 or char in _HTML_AND_SEPARATORS:
            out.append(f"\\u{code:04x}")
        elif 0xD800 <= code <= 0xDFFF:
            # A lone surrogate is invalid UTF-8 for Go: it writes the
            # replacement character as an escape.
            out.append("\\ufffd")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def _encode(value: object, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, Mapping):
        out.append("{")
        for position, (key, item) in enumerate(value.items()):
            if position:
                out.append(",")
            out.append(_string(str(key)))
            out.append(":")
            _encode(item, out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for position, item in enumerate(value):
            if position:
                out.append(",")
            _encode(item, out)
        out.append("]")
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as Go JSON")


def dumps(value: object) -> bytes:
    """Go's ``json.Marshal`` output for ``value``.

    Mappings keep their order (callers build structs in field order and sort
    map-typed members with :func:`_sorted_map`); floats are not supported.
    """
    out: list[str] = []
    _encode(value, out)
    return "".join(out).encode("utf-8", "surrogatepass")


def _sorted_map(value: object, where: str) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ManifestError(f"{where}: expected a map of strings to strings")
    # Go sorts map keys by their UTF-8 bytes; for str that is code point order.
    return {key: value[key] for key in sorted(value)}


def _strings(value: object, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ManifestError(f"{where}: expected a list of strings")
    return list(value)


def _text(doc: Mapping[str, Any], name: str, where: str) -> str:
    value = doc.get(name, "")
    if not isinstance(value, str):
        raise ManifestError(f"{where}.{name}: expected a string")
    return value


def _size(doc: Mapping[str, Any], where: str) -> int:
    size = doc.get("size", 0)
    if not isinstance(size, int) or isinstance(size, bool):
        raise ManifestError(f"{where}.size: expected an integer")
    return size


def platform(doc: object, where: str = "platform") -> dict[str, Any]:
    """A platform object as Go's ``imgspecv1.Platform`` writes it."""
    if not isinstance(doc, Mapping):
        raise ManifestError(f"{where}: expected an object")
    out: dict[str, Any] = {
        "architecture": _text(doc, "architecture", where),
        "os": _text(doc, "os", where),
    }
    if doc.get("os.version"):
        out["os.version"] = _text(doc, "os.version", where)
    if doc.get("os.features"):
        out["os.features"] = _strings(doc["os.features"], f"{where}.os.features")
    if doc.get("variant"):
        out["variant"] = _text(doc, "variant", where)
    return out


def _data(value: object, where: str) -> str:
    # Go holds ``data`` as []byte: decoded, then encoded again.
    if not isinstance(value, str):
        raise ManifestError(f"{where}.data: expected a base64 string")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ManifestError(f"{where}.data: expected standard base64") from None
    return base64.b64encode(raw).decode("ascii")


def descriptor(doc: object, where: str = "descriptor") -> dict[str, Any]:
    """A descriptor as Go's ``imgspecv1.Descriptor`` writes it."""
    if not isinstance(doc, Mapping):
        raise ManifestError(f"{where}: expected a descriptor object")
    out: dict[str, Any] = {}
    if doc.get("mediaType"):
        out["mediaType"] = _text(doc, "mediaType", where)
    out["digest"] = _text(doc, "digest", where)
    out["size"] = _size(doc, where)
    if doc.get("urls"):
        out["urls"] = _strings(doc["urls"], f"{where}.urls")
    if doc.get("annotations"):
        out["annotations"] = _sorted_map(doc["annotations"], f"{where}.annotations")
    if doc.get("data"):
        out["data"] = _data(doc["data"], where)
    if doc.get("platform") is not None:
        out["platform"] = platform(doc["platform"], f"{where}.platform")
    if doc.get("artifactType"):
        out["artifactType"] = _text(doc, "artifactType", where)
    return out


def layer_descriptor(
    media_type: str,
    digest: str,
    size: int,
    annotations: Mapping[str, str] | None = None,
    urls: Sequence[str] = (),
) -> dict[str, Any]:
    """A layer of a manifest whose layers c/image updated: five members only."""
    out: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": size}
    if urls:
        out["urls"] = list(urls)
    if annotations:
        out["annotations"] = _sorted_map(annotations, f"layer {digest} annotations")
    return out


def manifest(doc: Mapping[str, Any], layers: Sequence[Mapping[str, Any]]) -> bytes:
    """An OCI image manifest with new ``layers``, as c/image serializes it.

    Args:
        doc: The source manifest, parsed.
        layers: The output layer descriptors (from :func:`layer_descriptor`).
    """
    out: dict[str, Any] = {"schemaVersion": doc.get("schemaVersion", 0)}
    if doc.get("mediaType"):
        out["mediaType"] = _text(doc, "mediaType", "manifest")
    out["config"] = descriptor(doc.get("config") or {}, "manifest config")
    out["layers"] = [dict(layer) for layer in layers]
    if doc.get("subject") is not None:
        out["subject"] = descriptor(doc["subject"], "manifest subject")
    if doc.get("annotations"):
        out["annotations"] = _sorted_map(doc["annotations"], "manifest annotations")
    return dumps(out)


def index_from_components(
    manifests: Sequence[Mapping[str, Any]], annotations: Mapping[str, str] | None
) -> bytes:
    """An image index as c/image rebuilds it when copying every instance.

    Args:
        manifests: The child descriptors, already pointing at the output
            manifests; only the members Go's rebuild keeps are written.
        annotations: The source index's annotations.
    """
    children = []
    for position, child in enumerate(manifests):
        where = f"index manifests[{position}]"
        out: dict[str, Any] = {
            "mediaType": _text(child, "mediaType", where),
            "digest": _text(child, "digest", where),
            "size": _size(child, where),
        }
        if child.get("urls"):
            out["urls"] = _strings(child["urls"], f"{where}.urls")
        if child.get("annotations"):
            out["annotations"] = _sorted_map(
                child["annotations"], f"{where}.annotations"
            )
        if child.get("platform") is not None:
            out["platform"] = platform(child["platform"], f"{where}.platform")
        children.append(out)
    index: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": children,
    }
    if annotations:
        index["annotations"] = _sorted_map(annotations, "index annotations")
    return dumps(index)


def layout_index(doc: Mapping[str, Any]) -> bytes:
    """A layout's ``index.json`` as skopeo's OCI destination writes it."""
    out: dict[str, Any] = {"schemaVersion": doc.get("schemaVersion", 0)}
    if doc.get("mediaType"):
        out["mediaType"] = _text(doc, "mediaType", "index.json")
    entries = doc.get("manifests") or []
    if not isinstance(entries, list):
        raise ManifestError("index.json: expected a 'manifests' list")
    out["manifests"] = [
        descriptor(entry, f"index.json manifests[{i}]")
        for i, entry in enumerate(entries)
    ]
    if doc.get("annotations"):
        out["annotations"] = _sorted_map(doc["annotations"], "index.json annotations")
    return dumps(out)
