import os
import sys
import threading
import time
from pathlib import Path

import pytest

from regseal.errors import LocalStackError
from regseal.local.runtime import (
    LambdaContext,
    function_path,
    load_handler,
    seal_environment,
    serialized,
    tuf_environment,
    tuf_target_environment,
)
from regseal.settings import Settings
from regseal.tuf.settings import TufSettings
from regseal.tuf.store import MetadataLocation

MODULE_READING_ENVIRONMENT_AT_IMPORT = """
import os
BUCKET_AT_IMPORT = os.environ.get("REGSEAL_BUCKET")
PROFILE_AT_IMPORT = os.environ.get("AWS_PROFILE")

def handler(event, context):
    return {"bucket": BUCKET_AT_IMPORT, "profile": PROFILE_AT_IMPORT, "event": event}
"""


@pytest.fixture
def isolated_process_state(monkeypatch):
    """Undo what load_handler does to os.environ, sys.path and sys.modules."""
    environment = seal_environment(
        endpoint="http://127.0.0.1:1",
        region="us-east-1",
        bucket="registry",
        registry_root="/",
        state_prefix="regseal/",
        policy_location="s3://registry/regseal/policy.json",
    )
    for name in environment:
        # setenv first, so that teardown also removes what load_handler sets
        # (delenv of an unset name records nothing to undo).
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "modules", dict(sys.modules))
    return environment


def write_function(tmp_path, source, name="seal"):
    path = tmp_path / "functions" / name / "app.py"
    path.parent.mkdir(parents=True)
    path.write_text(source)
    return path


def test_environment_is_set_before_the_handler_module_is_imported(
    tmp_path, monkeypatch, isolated_process_state
):
    monkeypatch.setenv("AWS_PROFILE", "someone-real")
    path = write_function(tmp_path, MODULE_READING_ENVIRONMENT_AT_IMPORT)

    handler = load_handler(path, isolated_process_state)

    assert handler({"Records": []}, None) == {
        "bucket": "registry",
        "profile": None,
        "event": {"Records": []},
    }
    assert os.environ["AWS_ENDPOINT_URL"] == "http://127.0.0.1:1"
    assert os.environ["REGSEAL_POLICY"] == "s3://registry/regseal/policy.json"
    assert os.environ["POWERTOOLS_SERVICE_NAME"] == "regseal"
    assert str(path.parent) in sys.path


def test_seal_environment_names_the_stack_and_standard_aws_variables():
    environment = seal_environment(
        endpoint="http://127.0.0.1:9",
        region="us-east-1",
        bucket="registry",
        registry_root="/",
        state_prefix="regseal/",
        policy_location="s3://registry/regseal/policy.json",
    )

    assert environment == {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "REGSEAL_BUCKET": "registry",
        "REGSEAL_REGISTRY_ROOT": "/",
        "REGSEAL_STATE_PREFIX": "regseal/",
        "REGSEAL_POLICY": "s3://registry/regseal/policy.json",
        "REGSEAL_DIGEST_PUSH_GRACE_SECONDS": "8",
        "POWERTOOLS_SERVICE_NAME": "regseal",
    }


def test_missing_function_file_is_named_in_the_error(tmp_path, isolated_process_state):
    path = tmp_path / "functions" / "seal" / "app.py"

    with pytest.raises(LocalStackError, match=r"handler\(event, context\) at .*app.py"):
        load_handler(path, isolated_process_state)


def test_module_without_handler_is_refused(tmp_path, isolated_process_state):
    path = write_function(tmp_path, "HANDLER = None\n")

    with pytest.raises(LocalStackError, match="to define a callable 'handler'"):
        load_handler(path, isolated_process_state)


def test_module_failing_to_import_is_reported(tmp_path, isolated_process_state):
    path = write_function(tmp_path, "raise ImportError('no such layer')\n")

    with pytest.raises(LocalStackError, match=r"importing .* failed: .*no such layer"):
        load_handler(path, isolated_process_state)


def test_seal_function_is_found_in_the_checkout_next_to_the_package():
    checkout = Path(__file__).resolve().parents[3]

    assert function_path("seal") == checkout / "functions" / "seal" / "app.py"


def test_lambda_context_counts_down_from_its_timeout():
    context = LambdaContext.for_invocation(
        "regseal-seal", region="us-east-1", timeout_seconds=60
    )

    assert 59_000 < context.get_remaining_time_in_millis() <= 60_000
    assert context.invoked_function_arn == (
        "arn:aws:lambda:us-east-1:123456789012:function:regseal-seal"
    )
    other = LambdaContext.for_invocation("regseal-seal", region="us-east-1")
    assert other.aws_request_id != context.aws_request_id


def test_seal_environment_passes_the_queue_receive_limit_when_given():
    environment = seal_environment(
        endpoint="http://127.0.0.1:9",
        region="us-east-1",
        bucket="registry",
        registry_root="/",
        state_prefix="regseal/",
        policy_location="s3://registry/regseal/policy.json",
        max_receive_count=3,
    )

    assert environment["REGSEAL_MAX_RECEIVE_COUNT"] == "3"


def test_seal_environment_passes_the_digest_push_grace_when_given():
    environment = seal_environment(
        endpoint="http://127.0.0.1:9",
        region="us-east-1",
        bucket="registry",
        registry_root="/",
        state_prefix="regseal/",
        policy_location="s3://registry/regseal/policy.json",
        digest_push_grace=10,
    )

    assert environment["REGSEAL_DIGEST_PUSH_GRACE_SECONDS"] == "10"


def test_tuf_function_environment_names_the_metadata_and_leaves_keys_to_root():
    environment = tuf_environment(
        endpoint="http://127.0.0.1:9",
        region="us-east-1",
        bucket="registry",
        prefix="tuf/",
    )

    assert environment == {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "REGSEAL_TUF_BUCKET": "registry",
        "REGSEAL_TUF_PREFIX": "tuf/",
    }
    assert TufSettings.from_env(environment).location == MetadataLocation(
        "registry", "tuf/"
    )


def test_seal_function_gets_the_tuf_bucket_prefix_and_queue():
    environment = tuf_target_environment(
        bucket="registry", prefix="tuf/", queue_url="http://127.0.0.1:9/1/regseal-tuf"
    )

    settings = Settings.from_env(
        {"REGSEAL_BUCKET": "registry", "REGSEAL_POLICY": "s3://registry/p.json"}
        | environment
    )

    assert settings.tuf_bucket == "registry"
    assert settings.tuf_prefix == "tuf/"
    assert settings.tuf_queue_url == "http://127.0.0.1:9/1/regseal-tuf"


def test_serialized_handler_runs_one_invocation_at_a_time():
    running = []
    overlaps = []

    def handler(event, context):
        running.append(event)
        if len(running) > 1:
            overlaps.append(event)
        time.sleep(0.02)
        running.remove(event)
        return event

    invoke = serialized(handler)
    threads = [threading.Thread(target=invoke, args=({"n": n}, None)) for n in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert overlaps == []
    assert invoke({"n": 9}, None) == {"n": 9}
