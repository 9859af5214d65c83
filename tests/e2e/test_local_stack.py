import json
import signal
import subprocess
import time
import urllib.parse
import urllib.request

import boto3
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from regseal.local.sample import write_sample_image

pytestmark = pytest.mark.e2e

CONTRACT_KEYS = {
    "registry",
    "s3_endpoint",
    "bucket",
    "region",
    "jwe_private_key",
    "jwe_public_key",
    "queue_url",
    "dlq_url",
    "kms_key_id",
    "workdir",
    "pids",
    "tuf_metadata_url",
    "tuf_root",
}
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def client(state, service):
    return boto3.client(
        service,
        endpoint_url=state.s3_endpoint,
        region_name=state.region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def wait_for(condition, timeout, message):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.25)
    pytest.fail(message)


def test_state_file_has_the_contract_keys(local_stack_run):
    data = json.loads(local_stack_run.state_file.read_text())
    state = local_stack_run.state

    assert set(data) >= CONTRACT_KEYS
    assert state.registry.startswith("127.0.0.1:")
    assert state.s3_endpoint.startswith("http://127.0.0.1:")
    assert (state.bucket, state.region) == ("registry", "us-east-1")
    assert set(state.pids) == {"stack", "moto", "registry"}
    assert state.pids["stack"] == local_stack_run.process.pid
    assert state.tuf_metadata_url == f"{state.s3_endpoint}/registry/tuf/"
    assert state.tuf_root == state.workdir / "tuf" / "root.json"


def test_jwe_keys_are_a_pkcs8_rsa_3072_pair(local_stack):
    private_pem = local_stack.jwe_private_key.read_bytes()
    public_pem = local_stack.jwe_public_key.read_bytes()

    private = serialization.load_pem_private_key(private_pem, password=None)
    public = serialization.load_pem_public_key(public_pem)

    assert private_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert isinstance(private, rsa.RSAPrivateKey)
    assert private.key_size == 3072
    assert private.public_key().public_numbers() == public.public_numbers()
    assert local_stack.jwe_private_key.stat().st_mode & 0o077 == 0


def test_registry_answers_v2(local_stack):
    with NO_PROXY.open(f"http://{local_stack.registry}/v2/", timeout=5) as response:
        assert response.status == 200
        assert json.loads(response.read()) == {}


def test_moto_serves_s3_kms_sqs_and_ssm_on_one_endpoint(local_stack):
    policy = json.loads(
        client(local_stack, "s3")
        .get_object(Bucket="registry", Key="regseal/policy.json")["Body"]
        .read()
    )
    key = client(local_stack, "kms").describe_key(KeyId="alias/regseal-demo")
    attributes = client(local_stack, "sqs").get_queue_attributes(
        QueueUrl=local_stack.queue_url, AttributeNames=["RedrivePolicy"]
    )["Attributes"]
    ssm = client(local_stack, "ssm")
    ssm.put_parameter(Name="/regseal-e2e/probe", Value="here", Type="String")

    [team] = policy["teams"].values()
    [recipient] = team["recipients"]
    assert recipient["public_key"] == local_stack.jwe_public_key.read_text()
    assert key["KeyMetadata"]["KeyId"] == local_stack.kms_key_id
    assert local_stack.dlq_url.rsplit("/", 1)[1] in attributes["RedrivePolicy"]
    assert ssm.get_parameter(Name="/regseal-e2e/probe")["Parameter"]["Value"] == "here"


def test_push_reaches_the_handler_as_a_lambda_sqs_event(placeholder_stack, tmp_path):
    state = placeholder_stack.state
    write_sample_image(tmp_path / "img", big_layer_bytes=64 * 1024)
    tag_link = (
        "docker/registry/v2/repositories/e2e/push/_manifests/tags/1.0/current/link"
    )

    subprocess.run(
        [
            "skopeo",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            f"oci:{tmp_path / 'img'}:latest",
            f"docker://{state.registry}/e2e/push:1.0",
        ],
        check=True,
    )

    def tag_event():
        for entry in placeholder_stack.events():
            for record in entry["event"]["Records"]:
                for s3_record in json.loads(record["body"]).get("Records", []):
                    key = urllib.parse.unquote_plus(s3_record["s3"]["object"]["key"])
                    if key == tag_link:
                        return entry, record, s3_record
        return None

    entry, record, s3_record = wait_for(
        tag_event, 30, f"no event for {tag_link} reached the handler"
    )
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"].endswith(":regseal-events")
    assert record["awsRegion"] == "us-east-1"
    assert s3_record["eventName"].startswith("ObjectCreated:")
    assert s3_record["s3"]["bucket"]["name"] == "registry"
    assert entry["function_name"] == "regseal-seal"
    assert entry["import_environment"] == {
        "AWS_ENDPOINT_URL": state.s3_endpoint,
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "REGSEAL_BUCKET": "registry",
        "REGSEAL_REGISTRY_ROOT": "/",
        "REGSEAL_STATE_PREFIX": "regseal/",
        "REGSEAL_POLICY": "s3://registry/regseal/policy.json",
        "POWERTOOLS_SERVICE_NAME": "regseal",
    }

    sqs = client(state, "sqs")

    def queue_drained():
        attributes = sqs.get_queue_attributes(
            QueueUrl=state.queue_url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
            ],
        )["Attributes"]
        return all(value == "0" for value in attributes.values())

    wait_for(queue_drained, 30, "the pump left handled messages in the queue")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_signal_stops_every_process_and_removes_the_state_file(
    tmp_path, start_stack, signum
):
    with start_stack(tmp_path) as stack:
        assert stack.alive() == ["stack", "moto", "registry"]

        stack.process.send_signal(signum)
        status = stack.process.wait(30)

        assert status == 0
        assert stack.alive() == []
        assert not stack.state_file.exists()
        assert "regseal local: stopped" in stack.output.read_text()


def test_stack_without_tuf_has_null_tuf_members_and_no_tuf_resources(
    tmp_path, start_stack
):
    with start_stack(tmp_path, options=["--no-tuf"]) as stack:
        data = json.loads(stack.state_file.read_text())
        aliases = {
            alias["AliasName"]
            for alias in client(stack.state, "kms").list_aliases()["Aliases"]
        }
        queues = client(stack.state, "sqs").list_queues()["QueueUrls"]
        tuf_objects = client(stack.state, "s3").list_objects_v2(
            Bucket="registry", Prefix="tuf/"
        )

    assert {data[name] for name in CONTRACT_KEYS if name.startswith("tuf_")} == {None}
    assert "alias/regseal-demo" in aliases
    assert not [alias for alias in aliases if alias.startswith("alias/regseal-tuf")]
    assert sorted(url.rsplit("/", 1)[1] for url in queues) == [
        "regseal-events",
        "regseal-events-dlq",
    ]
    assert tuf_objects["KeyCount"] == 0
    assert not (stack.state.workdir / "tuf").exists()
