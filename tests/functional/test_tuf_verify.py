import base64
import hashlib
import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from regseal.errors import FormatError, VerificationError
from regseal.tuf.cli import main
from regseal.tuf.repository import utcnow
from regseal.verify import MANIFEST_TYPES, ImageReference, verify
from tests.support.tuf_world import BUCKET, custom, manifest, tuf_world


class _Registry:
    """A loopback HTTP server: registry manifests, and TUF metadata from S3."""

    def __init__(self, s3):
        self.manifests: dict[tuple[str, str], bytes] = {}
        self.accept_headers: list[str] = []
        self.account: str | None = None  # "user:password" for basic auth
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if registry.refuses(self.path, self.headers.get("Authorization")):
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="test"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = registry.answer(self.path, self.headers.get("Accept", ""), s3)
                if body is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, args=(0.05,), daemon=True
        )
        self.thread.start()

    def refuses(self, path, authorization):
        if self.account is None or not path.startswith("/v2/"):
            return False
        return authorization != "Basic " + base64.b64encode(
            self.account.encode()
        ).decode("ascii")

    def answer(self, path, accept, s3):
        if path.startswith("/v2/") and "/manifests/" in path:
            self.accept_headers.append(accept)
            repository, _, tag = path[4:].rpartition("/manifests/")
            return self.manifests.get((repository, tag))
        if path.startswith("/metadata/"):
            try:
                reply = s3.get_object(Bucket=BUCKET, Key="tuf/" + path[10:])
            except s3.exceptions.NoSuchKey:
                return None
            return reply["Body"].read()
        return None

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def world(tmp_path, monkeypatch):
    with tuf_world(tmp_path, monkeypatch) as w:
        w.add_team("team-a", "team-a/*")
        w.writer().add_target("team-a", "team-a/app", "v1", manifest(1), custom())
        w.refresh()
        yield w


@pytest.fixture
def registry(world):
    server = _Registry(world.s3)
    server.manifests[("team-a/app", "v1")] = manifest(1)
    yield server
    server.close()


def _verify(world, registry, tag="v1", **kwargs):
    kwargs.setdefault("cache_dir", world.tmp / "cache")
    kwargs.setdefault("metadata_url", world.store.location.url)
    return verify(
        ImageReference.parse(f"{registry.host}/team-a/app:{tag}"),
        root=world.root,
        **kwargs,
    )


def test_verify_accepts_the_signed_manifest(world, registry):
    result = _verify(world, registry)
    assert result.digest == "sha256:" + hashlib.sha256(manifest(1)).hexdigest()
    assert result.length == len(manifest(1))
    assert result.target_path == "team-a/app/tags/v1"
    assert result.custom["platforms"] == ["linux/amd64"]
    accept = registry.accept_headers[-1]
    assert all(media_type in accept for media_type in MANIFEST_TYPES)


def test_verify_reads_metadata_over_http_too(world, registry):
    result = _verify(world, registry, metadata_url=f"http://{registry.host}/metadata/")
    assert result.length == len(manifest(1))


def test_verify_rejects_a_manifest_that_differs_from_the_target(world, registry):
    registry.manifests[("team-a/app", "v1")] = manifest(1) + b" "
    with pytest.raises(VerificationError, match="manifest mismatch"):
        _verify(world, registry)


def test_verify_rejects_an_unknown_tag(world, registry):
    registry.manifests[("team-a/app", "v9")] = manifest(9)
    with pytest.raises(VerificationError, match="unknown target"):
        _verify(world, registry, tag="v9")


def test_verify_rejects_expired_metadata(world, registry):
    world.publisher(
        clock=lambda: utcnow() - timedelta(days=3)
    ).refresh_snapshot_and_timestamp(force=True)
    with pytest.raises(VerificationError, match="metadata expired"):
        _verify(world, registry)


def test_verify_rejects_rolled_back_metadata(world, registry):
    old = world.get_raw("timestamp.json")
    world.refresh(force=True)
    _verify(world, registry)
    world.put_raw("timestamp.json", old)
    with pytest.raises(VerificationError, match="metadata rolled back"):
        _verify(world, registry)


def test_verify_reports_a_registry_that_does_not_serve_the_tag(world, registry):
    del registry.manifests[("team-a/app", "v1")]
    with pytest.raises(VerificationError, match="answered 404"):
        _verify(world, registry)


def test_a_mismatch_names_reference_target_urls_digests_and_lengths(world, registry):
    served = manifest(1) + b" "
    registry.manifests[("team-a/app", "v1")] = served

    with pytest.raises(VerificationError) as info:
        _verify(world, registry)

    text = str(info.value)
    signed = "sha256:" + hashlib.sha256(manifest(1)).hexdigest()
    actual = "sha256:" + hashlib.sha256(served).hexdigest()
    assert text.startswith(f"manifest mismatch for {registry.host}/team-a/app:v1: ")
    assert f"the registry serves {actual} ({len(served)} bytes)" in text
    assert f"at http://{registry.host}/v2/team-a/app/manifests/v1" in text
    assert f"TUF target 'team-a/app/tags/v1' at {world.store.location.url}" in text
    assert f"says {signed} ({len(manifest(1))} bytes)" in text


def test_expired_and_rolled_back_metadata_name_the_url_and_the_target(world, registry):
    url = world.store.location.url
    old = world.get_raw("timestamp.json")
    world.refresh(force=True)
    _verify(world, registry)
    world.put_raw("timestamp.json", old)

    with pytest.raises(VerificationError) as rolled_back:
        _verify(world, registry)
    world.publisher(
        clock=lambda: utcnow() - timedelta(days=3)
    ).refresh_snapshot_and_timestamp(force=True)
    with pytest.raises(VerificationError) as expired:
        _verify(world, registry, cache_dir=world.tmp / "fresh-cache")

    where = f"TUF metadata at {url} (target 'team-a/app/tags/v1')"
    assert str(rolled_back.value).startswith(f"metadata rolled back: {where}: ")
    assert f"cached in {world.tmp / 'cache'}" in str(rolled_back.value)
    assert str(expired.value).startswith(f"metadata expired: {where}: ")
    assert "timestamp.json is expired" in str(expired.value)


def test_unreachable_metadata_names_the_url(world, registry):
    from regseal.local.processes import free_port

    url = f"http://127.0.0.1:{free_port()}/metadata/"

    with pytest.raises(VerificationError) as info:
        _verify(world, registry, metadata_url=url)

    assert str(info.value).startswith(
        f"cannot download metadata: TUF metadata at {url} "
        "(target 'team-a/app/tags/v1'): MaxRetryError: "
    )
    assert "root.json" in str(info.value)


def test_a_registry_error_names_the_url_and_the_reference(world, registry):
    del registry.manifests[("team-a/app", "v1")]

    with pytest.raises(VerificationError) as info:
        _verify(world, registry)

    assert str(info.value) == (
        f"registry: GET http://{registry.host}/v2/team-a/app/manifests/v1 answered "
        f"404 for {registry.host}/team-a/app:v1; expected 200 with the tag's manifest"
    )


def test_an_unusable_cache_is_named(world, registry):
    blocker = world.tmp / "not-a-directory"
    blocker.write_text("x")

    with pytest.raises(VerificationError) as info:
        _verify(world, registry, cache_dir=blocker)

    assert str(info.value) == f"cannot use the metadata cache {blocker}: File exists"


def test_verify_command_names_a_missing_or_invalid_root_file(world, registry, capsys):
    missing = world.tmp / "missing-root.json"
    garbage = world.tmp / "garbage-root.json"
    garbage.write_text('{"signed": {}}')
    base = [
        "verify",
        f"{registry.host}/team-a/app:v1",
        "--metadata",
        world.store.location.url,
        "--cache-dir",
        str(world.tmp / "cli-cache"),
    ]

    assert main([*base, "--root", str(missing)]) == 1
    missing_error = capsys.readouterr().err
    assert main([*base, "--root", str(garbage)]) == 1
    garbage_error = capsys.readouterr().err

    assert missing_error == (
        f"regseal verify: FAILED: cannot read trusted root {missing}: "
        "No such file or directory\n"
    )
    assert garbage_error.startswith(
        f"regseal verify: FAILED: trusted root {garbage}: expected a valid, "
        "self-signed TUF root: "
    )


def test_verify_command_logs_in_with_creds_and_names_a_refusal(
    world, registry, capsys, monkeypatch
):
    for name in (
        "REGSEAL_REGISTRY_USERNAME",
        "REGSEAL_REGISTRY_PASSWORD",
        "REGSEAL_REGISTRY_CREDENTIALS",
    ):
        monkeypatch.delenv(name, raising=False)
    registry.account = "testing:testing"
    root = world.tmp / "root.json"
    root.write_bytes(world.root)
    argv = [
        "verify",
        f"{registry.host}/team-a/app:v1",
        "--root",
        str(root),
        "--metadata",
        world.store.location.url,
        "--cache-dir",
        str(world.tmp / "cli-cache"),
    ]

    assert main([*argv, "--creds", "testing:testing"]) == 0
    verified = capsys.readouterr().out
    assert main([*argv, "--creds", "testing:wrong-9c1d"]) == 1
    refused = capsys.readouterr().err
    assert main(argv) == 1
    anonymous = capsys.readouterr().err

    assert verified.startswith(f"verified {registry.host}/team-a/app:v1 sha256:")
    url = f"http://{registry.host}/v2/team-a/app/manifests/v1"
    assert refused.startswith(
        f"regseal verify: FAILED: registry: GET {url} for "
        f"{registry.host}/team-a/app:v1: registry {registry.host}: refused the "
        "credentials of 'testing' (from --creds)"
    )
    assert "wrong-9c1d" not in refused
    assert "requires basic auth" in anonymous
    assert "--creds or $REGSEAL_REGISTRY_USERNAME/$REGSEAL_REGISTRY_PASSWORD" in (
        anonymous
    )


def test_verify_command_exit_status_and_reason(world, registry, capsys):
    root = world.tmp / "root.json"
    root.write_bytes(world.root)
    argv = [
        "verify",
        f"{registry.host}/team-a/app:v1",
        "--root",
        str(root),
        "--metadata",
        world.store.location.url,
        "--cache-dir",
        str(world.tmp / "cli-cache"),
        "--json",
    ]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["digest"] == "sha256:" + hashlib.sha256(manifest(1)).hexdigest()

    registry.manifests[("team-a/app", "v1")] = b"{}"
    assert main(argv) == 1
    assert "FAILED: manifest mismatch" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "url"),
    [
        (
            "127.0.0.1:5000/team-a/app:v1",
            "http://127.0.0.1:5000/v2/team-a/app/manifests/v1",
        ),
        ("localhost/a:b", "http://localhost/v2/a/manifests/b"),
        ("[::1]:5000/a:b", "http://[::1]:5000/v2/a/manifests/b"),
        ("registry.example/a/b:c", "https://registry.example/v2/a/b/manifests/c"),
    ],
)
def test_manifest_url_uses_http_only_for_loopback(text, url):
    assert ImageReference.parse(text).manifest_url() == url


def test_insecure_allows_plain_http_elsewhere():
    reference = ImageReference.parse("registry.example:5000/a:b")
    assert reference.manifest_url(insecure=True).startswith("http://registry.example")


@pytest.mark.parametrize(
    "text",
    [
        "team-a/app",
        "team-a/app:v1",
        "host.example/app",
        "host.example/App:v1",
        "host.example/a@sha256:ab",
        "host:v1",
    ],
)
def test_bad_references_are_refused(text):
    with pytest.raises(FormatError):
        ImageReference.parse(text)
