"""infra/bucket-lifecycle.json: accepted by S3's API and aimed at what seals stage.

A killed seal leaves its multipart upload open under the staging prefix; the
rule must cover exactly the keys the seal stages to, and nothing of the
registry's.
"""

from __future__ import annotations

import json
from pathlib import Path

from regseal.events import Action, ObjectEvent
from regseal.seal import Outcome
from regseal.settings import Settings
from tests.functional.conftest import BUCKET
from tests.support.registry import random_layer

RULES = Path(__file__).resolve().parents[2] / "infra" / "bucket-lifecycle.json"


def load_rules() -> dict:
    return json.loads(RULES.read_text())


def test_lifecycle_rule_is_accepted_by_s3_and_reads_back_unchanged(stack):
    rules = load_rules()

    stack.s3.put_bucket_lifecycle_configuration(
        Bucket=BUCKET, LifecycleConfiguration=rules
    )

    stored = stack.s3.get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"]
    assert len(stored) == 1
    (rule,) = stored
    assert rule["Status"] == "Enabled"
    assert rule["Filter"] == {"Prefix": "regseal/staging/"}
    assert rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    assert rule["Expiration"] == {"Days": 1}


def test_lifecycle_rule_prefix_is_the_default_state_prefix_staging():
    (rule,) = load_rules()["Rules"]

    assert rule["Filter"]["Prefix"] == Settings(bucket=BUCKET).state_prefix + "staging/"


def test_every_upload_a_seal_stages_falls_under_the_rule_and_nothing_else(stack):
    (rule,) = load_rules()["Rules"]
    prefix = rule["Filter"]["Prefix"]
    started: list[str] = []
    stack.s3.meta.events.register(
        "provide-client-params.s3.CreateMultipartUpload",
        lambda params, **_: started.append(params["Key"]),
    )
    layer = random_layer(12 * 1024 * 1024)  # three 5 MiB parts: staged
    stack.registry.push_image("team-a/big", "1", [layer])
    event = ObjectEvent(
        BUCKET, stack.sealer.layout.tag_link("team-a/big", "1"), Action.CREATED
    )

    result = stack.sealer.handle(event)

    assert result.outcome is Outcome.SEALED
    assert len(started) == 1
    assert started[0].startswith(prefix)
    registry_keys = list(stack.store.list_keys("docker/"))
    assert registry_keys
    assert not [key for key in registry_keys if key.startswith(prefix)]
