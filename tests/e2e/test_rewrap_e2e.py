"""Re-wrap on the real stack: skopeo opens with the new recipient only.

A stack of the test's own (its policy changes), the real seal function,
`regseal rewrap` run as an operator would, and unmodified skopeo.
"""

import json
import os
import subprocess
import sys

import boto3
import pytest

from tests.e2e.test_seal_e2e import push, unique_files, wait_sealed
from tests.support import skopeo
from tests.support.keys import generate_keypair
from tests.support.ocilayout import read_image_layout, tar_layer, write_image_layout
from tests.support.stackclient import StackClient

pytestmark = pytest.mark.e2e


def operator_environment(state):
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        "AWS_ENDPOINT_URL": state.s3_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": state.region,
        "REGSEAL_BUCKET": state.bucket,
        "REGSEAL_POLICY": state.policy,
    }


def test_rewrap_keeps_blobs_and_moves_access_to_the_new_recipient(
    tmp_path, start_stack
):
    newcomer = generate_keypair("rsa")
    new_private, new_public = newcomer.write(tmp_path / "keys")
    (tmp_path / "stack").mkdir()
    with start_stack(tmp_path / "stack", options=("--no-tuf",)) as running:
        state = running.state
        stack = StackClient(state, running.output)
        image = write_image_layout(
            tmp_path / "image",
            [tar_layer(unique_files("rewrap-a")), tar_layer(unique_files("rewrap-b"))],
        )
        reference = f"{state.registry}/e2e/rewrap:1"
        plaintext = push(stack, image, reference, tmp_path)
        _, sealed, _ = wait_sealed(stack, reference)

        s3 = boto3.client(
            "s3",
            endpoint_url=state.s3_endpoint,
            region_name=state.region,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        bucket, _, key = state.policy.removeprefix("s3://").partition("/")
        policy = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        policy["version"] = "rewrap-2"
        for team in policy["teams"].values():
            team["recipients"] = [
                {"name": "newcomer", "public_key": new_public.read_text()}
            ]
        s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(policy).encode())

        result = subprocess.run(
            [sys.executable, "-m", "regseal", "rewrap", "e2e/rewrap:1"],
            env=operator_environment(state),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "e2e/rewrap:1: sealed: re-wrapped" in result.stdout

        rewrapped = json.loads(skopeo.inspect_raw(reference))
        assert [x["digest"] for x in rewrapped["layers"]] == [
            x["digest"] for x in sealed["layers"]
        ]
        skopeo.pull(
            reference, f"oci:{tmp_path / 'new'}:x", "--decryption-key", new_private
        )
        pulled = read_image_layout(tmp_path / "new", "x")
        assert pulled.manifest.layer_digests == plaintext.layer_digests
        with pytest.raises(skopeo.SkopeoError):
            skopeo.pull(
                reference,
                f"oci:{tmp_path / 'old'}:x",
                "--decryption-key",
                state.jwe_private_key,
            )
