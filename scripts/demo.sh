#!/usr/bin/env bash
# The main job: push a plaintext image to the local stack and show that regseal
# seals it. Starts `regseal local up`, pushes a three-layer sample image (one
# layer of 64 MiB), waits until every layer is encrypted, then proves that
#   - the JWE private key from the state file decrypts it to the exact pushed
#     plaintext layer digests,
#   - a pull without the key yields only ciphertext, and
#   - `regseal verify` (the TUF client workflow from the stack's trusted root)
#     accepts the sealed tag, and refuses a tag that was never sealed.
# Prints PASS or FAIL; exits non-zero on failure. Run it with `make demo`.
#
# Environment: REGSEAL_DEMO_SEAL_TIMEOUT (seconds, default 120),
# REGSEAL_DEMO_VERIFY_TIMEOUT (seconds the TUF function may take, default 30),
# REGSEAL_DEMO_BIG_LAYER_MIB (default 64), REGSEAL_DEMO_KEEP=1 keeps the
# temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
PY=$PWD/.venv/bin/python

seal_timeout=${REGSEAL_DEMO_SEAL_TIMEOUT:-120}
verify_timeout=${REGSEAL_DEMO_VERIFY_TIMEOUT:-30}
big_layer_mib=${REGSEAL_DEMO_BIG_LAYER_MIB:-64}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/regseal-demo.XXXXXX")
state=$tmp/state.json
stack_log=$tmp/stack.log
stack_pid=""

step() { printf '\n== %s\n' "$*"; }
fail() {
    printf '\nFAIL: %s\n' "$*" >&2
    exit 1
}
show_stack_log() {
    [ -f "$stack_log" ] || return 0
    printf '\n-- last lines of the stack output (%s):\n' "$stack_log" >&2
    tail -n 40 "$stack_log" >&2
}
finish() {
    status=$?
    trap - EXIT INT TERM
    if [ -n "$stack_pid" ] && kill -0 "$stack_pid" 2>/dev/null; then
        kill -TERM "$stack_pid"
        wait "$stack_pid" 2>/dev/null || true
    fi
    if [ "$status" -ne 0 ]; then
        show_stack_log
        echo "Kept $tmp for inspection." >&2
    elif [ "${REGSEAL_DEMO_KEEP:-0}" = 1 ]; then
        echo "Kept $tmp."
    else
        rm -rf "$tmp"
    fi
    exit "$status"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Print one field of the state file.
state_field() {
    "$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' \
        "$state" "$1"
}

step "1. Start the local stack (moto, TUF repository, registry on moto's S3, event pumps)"
regseal local up --state "$state" >"$stack_log" 2>&1 &
stack_pid=$!
for _ in $(seq 1 300); do
    [ -f "$state" ] && break
    kill -0 "$stack_pid" 2>/dev/null || fail "regseal local up exited before the stack came up"
    sleep 0.2
done
[ -f "$state" ] || fail "no state file after 60 s"
registry=$(state_field registry)
private_key=$(state_field jwe_private_key)
ref="$registry/demo/app:1.0"
tuf_root=$(state_field tuf_root)
tuf_metadata=$(state_field tuf_metadata_url)
echo "registry $registry, AWS endpoint $(state_field s3_endpoint), key $private_key"
echo "TUF metadata $tuf_metadata, trusted root $tuf_root"

step "2. Build a sample image without Docker (3 layers, one of ${big_layer_mib} MiB)"
regseal local sample-image "$tmp/image" --big-layer-mib "$big_layer_mib" >"$tmp/sample.json"
"$PY" - "$tmp/sample.json" <<'EOF'
import json, sys
image = json.load(open(sys.argv[1]))
for layer in image["layers"]:
    print(f"  {layer['mediaType']:<45} {layer['size']:>10} bytes  {layer['digest']}")
EOF

step "3. Push it as plaintext: skopeo copy oci:... docker://$ref"
skopeo copy --quiet --dest-tls-verify=false --digestfile "$tmp/pushed.digest" \
    "oci:$tmp/image:latest" "docker://$ref"
pushed=$(cat "$tmp/pushed.digest")
echo "pushed manifest $pushed"
echo "(skopeo gzips the uncompressed tar layer while pushing, as docker push does:"
echo " its digest in the registry differs from the one above)"
# skopeo gzips the plain tar layer on the way, so the plaintext digests come
# from what the registry stored. The manifest is read from the registry's
# storage by digest: blob data stays there, while the seal may already have
# hidden the plaintext manifest from the registry's API.
"$PY" - "$state" "$pushed" "$tmp/plaintext.json" <<'EOF'
import hashlib, json, sys
import boto3

state = json.load(open(sys.argv[1]))
digest = sys.argv[2]
s3 = boto3.client(
    "s3", endpoint_url=state["s3_endpoint"], region_name=state["region"],
    aws_access_key_id="testing", aws_secret_access_key="testing",
)
hexdigest = digest.removeprefix("sha256:")
key = f"docker/registry/v2/blobs/sha256/{hexdigest[:2]}/{hexdigest}/data"
data = s3.get_object(Bucket=state["bucket"], Key=key)["Body"].read()
if hashlib.sha256(data).hexdigest() != hexdigest:
    sys.exit(f"stored manifest {key} does not match its digest {digest}")
manifest = json.loads(data)
json.dump(manifest, open(sys.argv[3], "w"))
for layer in manifest["layers"]:
    print(f"  plaintext {layer['mediaType']:<45} {layer['digest']}")
EOF

step "4. Wait until regseal has sealed the tag (timeout ${seal_timeout} s)"
started=$SECONDS
deadline=$((started + seal_timeout))
sealed=""
while [ "$SECONDS" -lt "$deadline" ]; do
    if skopeo inspect --raw --tls-verify=false "docker://$ref" >"$tmp/current.json" 2>/dev/null &&
        "$PY" - "$tmp/current.json" <<'EOF'
import json, sys
layers = json.load(open(sys.argv[1])).get("layers", [])
sys.exit(0 if layers and all(l["mediaType"].endswith("+encrypted") for l in layers) else 1)
EOF
    then
        sealed=yes
        break
    fi
    sleep 2
done
[ -n "$sealed" ] || fail "the tag $ref was not sealed within ${seal_timeout} s"
echo "sealed after $((SECONDS - started)) s"

step "5. The sealed manifest (long annotation values shortened)"
"$PY" - "$tmp/current.json" <<'EOF'
import json, sys

def shorten(value):
    if isinstance(value, dict):
        return {k: shorten(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shorten(v) for v in value]
    if isinstance(value, str) and len(value) > 72:
        return f"{value[:60]}... ({len(value)} chars)"
    return value

print(json.dumps(shorten(json.load(open(sys.argv[1]))), indent=2))
EOF

step "6. Decrypt with the stack's JWE private key: skopeo copy --decryption-key"
skopeo copy --quiet --src-tls-verify=false --decryption-key "$private_key" \
    "docker://$ref" "oci:$tmp/decrypted:latest"
"$PY" - "$tmp/plaintext.json" "$tmp/decrypted" <<'EOF'
import hashlib, json, sys
from pathlib import Path

expected = [layer["digest"] for layer in json.load(open(sys.argv[1]))["layers"]]
layout = Path(sys.argv[2])

def blob(digest):
    return layout / "blobs" / "sha256" / digest.removeprefix("sha256:")

index = json.loads((layout / "index.json").read_text())
manifest = json.loads(blob(index["manifests"][0]["digest"]).read_bytes())
got = [layer["digest"] for layer in manifest["layers"]]
ok = got == expected
for want, have in zip(expected, got):
    print(f"  {'ok  ' if want == have else 'DIFF'} pushed {want}\n       decrypted {have}")
for layer in manifest["layers"]:
    actual = "sha256:" + hashlib.sha256(blob(layer["digest"]).read_bytes()).hexdigest()
    if actual != layer["digest"]:
        print(f"  decrypted blob {layer['digest']} has content {actual}")
        ok = False
if len(got) != len(expected):
    print(f"  expected {len(expected)} layers, got {len(got)}")
sys.exit(0 if ok else "decrypted layers differ from the pushed plaintext")
EOF
echo "decrypted layer digests equal the pushed plaintext layer digests"

step "7. Pull without a key: only ciphertext"
echo "(skopeo may warn that a layer's compression differs from what it recorded:"
echo " without the key it cannot look inside an encrypted layer; it copies it as is)"
skopeo copy --quiet --src-tls-verify=false "docker://$ref" "oci:$tmp/encrypted:latest"
"$PY" - "$tmp/plaintext.json" "$tmp/encrypted" <<'EOF'
import hashlib, json, sys
from pathlib import Path

plaintext = {layer["digest"] for layer in json.load(open(sys.argv[1]))["layers"]}
layout = Path(sys.argv[2])

def blob(digest):
    return layout / "blobs" / "sha256" / digest.removeprefix("sha256:")

index = json.loads((layout / "index.json").read_text())
manifest = json.loads(blob(index["manifests"][0]["digest"]).read_bytes())
problems = []
for layer in manifest["layers"]:
    data = blob(layer["digest"]).read_bytes()
    actual = "sha256:" + hashlib.sha256(data).hexdigest()
    checks = {
        "media type ends in +encrypted": layer["mediaType"].endswith("+encrypted"),
        "digest is none of the plaintext layers'": actual not in plaintext,
        "not gzip": data[:2] != b"\x1f\x8b",
        "not tar": data[257:262] != b"ustar",
    }
    failed = [name for name, passed in checks.items() if not passed]
    print(f"  {layer['mediaType']:<55} {len(data):>10} bytes  "
          + ("ciphertext" if not failed else "FAILED: " + ", ".join(failed)))
    problems += failed
sys.exit("pulled layers are not all ciphertext" if problems else 0)
EOF

step "8. Verify the tag against TUF: regseal verify $ref"
# The TUF function publishes snapshot and timestamp moments after the seal, so
# the first tries may not see the target yet. Each run is the whole client
# workflow (root, timestamp, snapshot, targets, the team's role) with its own
# cache, then a comparison with the manifest the registry serves.
echo "regseal verify $ref --root $tuf_root --metadata $tuf_metadata"
started=$SECONDS
verified=""
while [ "$SECONDS" -le "$((started + verify_timeout))" ]; do
    rm -rf "$tmp/tuf-cache"
    if regseal verify "$ref" --root "$tuf_root" --metadata "$tuf_metadata" \
        --cache-dir "$tmp/tuf-cache" >"$tmp/verify.out" 2>"$tmp/verify.err"; then
        verified=yes
        break
    fi
    sleep 0.5
done
cat "$tmp/verify.out" "$tmp/verify.err"
[ -n "$verified" ] || fail "regseal verify did not accept $ref within ${verify_timeout} s"
sealed_digest=$("$PY" -c 'import hashlib, sys; print("sha256:" + hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$tmp/current.json")
grep -q "$sealed_digest" "$tmp/verify.out" ||
    fail "regseal verify accepted a digest other than the sealed manifest's $sealed_digest"
echo "the TUF target of $ref is the sealed manifest $sealed_digest"

step "9. A tag that was never sealed must not verify"
never="$registry/demo/app:never-sealed"
echo "regseal verify $never --root $tuf_root --metadata $tuf_metadata"
if regseal verify "$never" --root "$tuf_root" --metadata "$tuf_metadata" \
    --cache-dir "$tmp/tuf-cache" 2>"$tmp/verify-never.err"; then
    fail "regseal verify accepted $never, which was never pushed"
fi
cat "$tmp/verify-never.err"
grep -q "unknown target" "$tmp/verify-never.err" ||
    fail "regseal verify refused $never, but not for an unknown target"
echo "refused, as it must be"

printf '\nPASS: the pushed image was sealed; the key opens it, without it the layers are ciphertext, and TUF vouches for the sealed digest.\n'
