"""The deployable stack (template.yaml), transformed and evaluated offline.

Each test reads the CloudFormation that SAM would deploy for one parameter set
(see cfn_model) and checks one property the design relies on: logs kept,
poison messages parked, keys used only as the KMS model allows, no grant wider
than needed, and the rule delivering exactly the registry's tag and revision
links.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tests.support.cfn_model import (
    Att,
    Stack,
    allowed,
    iam_glob_matches,
    iam_statements,
    load_stack,
    load_template,
    pattern_matches,
    wildcard_regex,
)

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "tests" / "events"
BUCKET = "example-registry"
HEX = "ef3a0b8e1cb2e64f17653d566237f2fc20cf04cece5062b7dd10a78f9def7ee0"

DEMO = {"RegistryBucketName": BUCKET}
IMPORTED = {
    "RegistryBucketName": BUCKET,
    "RegistryRootDirectory": "/registry/prod",
    "TeamKeyArns": (
        "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab,"
        "arn:aws:kms:eu-west-1:444455556666:key/0987dcba-09fe-87dc-65ba-ab0987654321"
    ),
    "TeamSigningKeyArns": (
        "arn:aws:kms:us-east-1:111122223333:key/5555eeee-12ab-34cd-56ef-1234567890ab"
    ),
    "MetadataBucketName": "example-tuf",
    "PolicyLocation": "ssm:/regseal/policy",
    "AlarmTopicArn": "arn:aws:sns:us-east-1:111122223333:regseal-alarms",
    "Architecture": "x86_64",
}
POLICY_ELSEWHERE = {
    "RegistryBucketName": BUCKET,
    "PolicyLocation": "s3://example-config/regseal/policy.json",
}
SCENARIOS = {"demo": DEMO, "imported": IMPORTED, "policy-elsewhere": POLICY_ELSEWHERE}

# Resource "*" is allowed only for these actions, because AWS offers no
# resource-level permission for them.
STAR_RESOURCE_ACTIONS = {
    "xray:PutTraceSegments": "X-Ray has no resource-level permissions",
    "xray:PutTelemetryRecords": "X-Ray has no resource-level permissions",
}
# KMS operations that use key material. Public-key reads are not among them.
KMS_CRYPTO = (
    "kms:Encrypt",
    "kms:Decrypt",
    "kms:ReEncryptFrom",
    "kms:ReEncryptTo",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:GenerateDataKeyPair",
    "kms:GenerateDataKeyPairWithoutPlaintext",
    "kms:Sign",
    "kms:GenerateMac",
    "kms:DeriveSharedSecret",
)
KMS_KEY_ARN_PREFIX = "arn:aws:kms:"


@cache
def _stack(items: tuple[tuple[str, str], ...]) -> Stack:
    return load_stack(dict(items))


def stack_for(parameters: dict[str, str]) -> Stack:
    return _stack(tuple(sorted(parameters.items())))


@pytest.fixture(params=sorted(SCENARIOS), name="stack")
def _any_stack(request: pytest.FixtureRequest) -> Stack:
    return stack_for(SCENARIOS[request.param])


def seal_function(stack: Stack) -> Any:
    (function,) = stack.of_type("AWS::Lambda::Function")
    return function


def seal_role(stack: Stack) -> str:
    role = seal_function(stack).properties["Role"]
    return str(stack.target(role, "AWS::IAM::Role").logical_id)


def sample(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return loaded


def object_created(key: str, bucket: str = BUCKET) -> dict[str, Any]:
    event = sample("eventbridge-object-created-tag-link.json")
    event["resources"] = [f"arn:aws:s3:::{bucket}"]
    event["detail"]["bucket"]["name"] = bucket
    event["detail"]["object"]["key"] = key
    return event


def rule_pattern(stack: Stack) -> dict[str, Any]:
    (rule,) = stack.of_type("AWS::Events::Rule")
    pattern: dict[str, Any] = rule.properties["EventPattern"]
    return pattern


# ------------------------------------------------------------------ logging


def test_every_function_logs_to_an_explicit_log_group_with_retention(
    stack: Stack,
) -> None:
    functions = stack.of_type("AWS::Lambda::Function")
    assert functions
    for function in functions:
        group_ref = function.properties["LoggingConfig"]["LogGroup"]
        group = stack.target(group_ref, "AWS::Logs::LogGroup")

        assert (
            group.properties["RetentionInDays"] == stack.parameters["LogRetentionDays"]
        )
        assert group.properties["LogGroupName"].startswith("/regseal/regseal-test/")


def test_seal_role_writes_only_to_its_own_log_group(stack: Stack) -> None:
    group = seal_function(stack).properties["LoggingConfig"]["LogGroup"]
    log_statements = [
        s
        for s in iam_statements(stack)
        if any(a.startswith("logs:") for a in s.actions)
    ]

    assert log_statements
    for statement in log_statements:
        assert statement.resources == (Att(group.logical_id, "Arn"),)


# ------------------------------------------------------------------- queues


def test_every_queue_feeding_a_function_has_a_dead_letter_queue_with_redrive(
    stack: Stack,
) -> None:
    mappings = stack.of_type("AWS::Lambda::EventSourceMapping")
    assert mappings
    for mapping in mappings:
        queue = stack.target(mapping.properties["EventSourceArn"], "AWS::SQS::Queue")
        redrive = queue.properties["RedrivePolicy"]
        dead_letter = stack.target(redrive["deadLetterTargetArn"], "AWS::SQS::Queue")

        assert dead_letter.logical_id != queue.logical_id
        assert redrive["maxReceiveCount"] == stack.parameters["MaxReceiveCount"]
        assert int(dead_letter.properties["MessageRetentionPeriod"]) > int(
            queue.properties["MessageRetentionPeriod"]
        )


def test_seal_queue_visibility_outlasts_six_timeouts_and_the_batching_window() -> None:
    template_stack = stack_for(DEMO)
    (mapping,) = template_stack.of_type("AWS::Lambda::EventSourceMapping")
    queue = template_stack.target(
        mapping.properties["EventSourceArn"], "AWS::SQS::Queue"
    )
    timeout = int(seal_function(template_stack).properties["Timeout"])
    longest_window = int(
        load_template()["Parameters"]["MaxBatchingWindowSeconds"]["MaxValue"]
    )

    assert int(queue.properties["VisibilityTimeout"]) >= 6 * timeout + longest_window


def test_seal_function_reports_partial_batch_failures(stack: Stack) -> None:
    (mapping,) = stack.of_type("AWS::Lambda::EventSourceMapping")

    assert mapping.properties["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping.properties["BatchSize"] == stack.parameters["BatchSize"]
    assert (
        mapping.properties["MaximumBatchingWindowInSeconds"]
        == stack.parameters["MaxBatchingWindowSeconds"]
    )
    assert mapping.properties["FunctionName"] == Att(
        seal_function(stack).logical_id, "Ref"
    )


def test_queue_policies_let_only_the_registry_rule_send(stack: Stack) -> None:
    (rule,) = stack.of_type("AWS::Events::Rule")
    policies = stack.of_type("AWS::SQS::QueuePolicy")
    assert len(policies) == 2
    for policy in policies:
        allows = [
            s
            for s in policy.properties["PolicyDocument"]["Statement"]
            if s["Effect"] == "Allow"
        ]

        assert len(allows) == 1
        assert allows[0]["Principal"] == {"Service": "events.amazonaws.com"}
        assert allows[0]["Action"] == "sqs:SendMessage"
        assert allows[0]["Condition"] == {
            "ArnEquals": {"aws:SourceArn": Att(rule.logical_id, "Arn")}
        }


def test_rule_targets_the_seal_queue_with_the_dead_letter_queue(stack: Stack) -> None:
    (rule,) = stack.of_type("AWS::Events::Rule")
    (mapping,) = stack.of_type("AWS::Lambda::EventSourceMapping")
    queue = stack.target(mapping.properties["EventSourceArn"], "AWS::SQS::Queue")
    (target,) = rule.properties["Targets"]

    assert target["Arn"] == Att(queue.logical_id, "Arn")
    assert (
        target["DeadLetterConfig"]["Arn"]
        == (queue.properties["RedrivePolicy"]["deadLetterTargetArn"])
    )


# ---------------------------------------------------------------------- KMS


def test_kms_statements_name_their_keys(stack: Stack) -> None:
    kms_statements = [
        s for s in iam_statements(stack) if any(a.startswith("kms:") for a in s.actions)
    ]
    assert kms_statements
    for statement in kms_statements:
        assert statement.resources, statement
        for resource in statement.resources:
            if isinstance(resource, Att):
                stack.target(resource, "AWS::KMS::Key")
                assert resource.attribute == "Arn"
            else:
                assert resource.startswith(KMS_KEY_ARN_PREFIX), statement
                assert ":key/" in resource, statement
                assert "*" not in resource, statement


def test_imported_keys_are_used_as_given_and_none_are_created() -> None:
    stack = stack_for(IMPORTED)
    by_sid = {s.owner + "/" + str(s.actions): s for s in iam_statements(stack)}
    encrypt = [s for s in by_sid.values() if "kms:Encrypt" in s.actions]
    sign = [s for s in by_sid.values() if "kms:Sign" in s.actions]

    assert stack.of_type("AWS::KMS::Key") == []
    assert [s.resources for s in encrypt] == [tuple(IMPORTED["TeamKeyArns"].split(","))]
    assert [s.resources for s in sign] == [(IMPORTED["TeamSigningKeyArns"],)]


def test_kms_statements_bind_encryption_context_or_signing_algorithm(
    stack: Stack,
) -> None:
    for statement in iam_statements(stack):
        uses_keys = [
            c
            for c in KMS_CRYPTO
            if any(iam_glob_matches(a, c) for a in statement.actions)
        ]
        if not uses_keys:
            continue
        if uses_keys == ["kms:Sign"]:
            assert statement.condition == {
                "StringEquals": {"kms:SigningAlgorithm": "ECDSA_SHA_256"}
            }
            continue

        assert statement.condition["ForAllValues:StringEquals"] == {
            "kms:EncryptionContextKeys": ["repository", "layer"]
        }, statement
        assert statement.condition["Null"] == {
            "kms:EncryptionContext:repository": "false",
            "kms:EncryptionContext:layer": "false",
        }, statement


def test_seal_role_cannot_decrypt(stack: Stack) -> None:
    role = seal_role(stack)
    actions = [
        a
        for s in iam_statements(stack)
        if role in s.roles and s.effect == "Allow"
        for a in s.actions
    ]

    assert "kms:Encrypt" in actions
    for forbidden in ("kms:Decrypt", "kms:ReEncryptFrom", "kms:GenerateDataKey"):
        assert not any(iam_glob_matches(a, forbidden) for a in actions), forbidden


def test_key_policies_grant_key_use_only_under_conditions(stack: Stack) -> None:
    for key in stack.of_type("AWS::KMS::Key"):
        for statement in key.properties["KeyPolicy"]["Statement"]:
            actions = statement["Action"]
            actions = [actions] if isinstance(actions, str) else actions
            grants = [
                c for c in KMS_CRYPTO if any(iam_glob_matches(a, c) for a in actions)
            ]
            if statement["Effect"] == "Allow" and grants:
                assert statement.get("Condition"), (key.logical_id, statement["Sid"])


def test_demo_layer_key_lets_runtimes_unwrap_only_their_repositories() -> None:
    stack = stack_for({**DEMO, "DemoTeamRepositoryPattern": "team-a/*"})
    (key,) = [
        k
        for k in stack.of_type("AWS::KMS::Key")
        if k.properties["KeyUsage"] == "ENCRYPT_DECRYPT"
    ]
    statements = key.properties["KeyPolicy"]["Statement"]
    decrypt_allows = [
        s for s in statements if s["Effect"] == "Allow" and "kms:Decrypt" in s["Action"]
    ]
    denies = [s for s in statements if s["Effect"] == "Deny"]
    role = Att(seal_role(stack), "Arn")

    assert len(decrypt_allows) == 1
    assert decrypt_allows[0]["Condition"]["StringLike"] == {
        "kms:EncryptionContext:repository": "team-a/*"
    }
    assert [d["Condition"] for d in denies] == [
        {"ArnEquals": {"aws:PrincipalArn": role}}
    ]
    assert "kms:Decrypt" in denies[0]["Action"]


def test_demo_keys_survive_stack_deletion() -> None:
    source = load_template()["Resources"]
    keys = [r for r in source.values() if r["Type"] == "AWS::KMS::Key"]

    assert len(keys) == 2
    assert {k["Properties"]["KeySpec"] for k in keys} == {
        "SYMMETRIC_DEFAULT",
        "ECC_NIST_P256",
    }
    for key in keys:
        assert key["DeletionPolicy"] == "Retain"
        assert key["UpdateReplacePolicy"] == "Retain"


# ---------------------------------------------------------------------- IAM


def test_resource_star_only_where_aws_requires_it(stack: Stack) -> None:
    starred: list[str] = []
    for statement in iam_statements(stack):
        if statement.effect != "Allow":
            continue
        for action in statement.actions:
            assert action != "*", statement
            assert not action.endswith(":*"), statement
        if "*" in statement.resources:
            starred.extend(statement.actions)

    assert sorted(starred) == sorted(STAR_RESOURCE_ACTIONS)


DEFAULT_ROOT = "docker/registry/v2/"
REPO = f"{DEFAULT_ROOT}repositories/team-a/app"
BLOB = f"{DEFAULT_ROOT}blobs/sha256/ef/{HEX}/data"
S3_ACCESS = [
    ("s3:GetObject", f"{REPO}/_manifests/tags/1.0/current/link", True),
    ("s3:GetObject", BLOB, True),
    ("s3:PutObject", BLOB, True),
    ("s3:DeleteObject", BLOB, False),
    ("s3:PutObject", f"{REPO}/_layers/sha256/{HEX}/link", True),
    ("s3:DeleteObject", f"{REPO}/_layers/sha256/{HEX}/link", True),
    ("s3:DeleteObject", f"{REPO}/_manifests/revisions/sha256/{HEX}/link", True),
    ("s3:DeleteObject", f"{REPO}/_manifests/tags/1.0/index/sha256/{HEX}/link", True),
    ("s3:PutObject", f"{REPO}/_uploads/5f1e/data", False),
    ("s3:DeleteObject", f"{REPO}/_uploads/5f1e/data", False),
    ("s3:PutObject", "regseal/staging/layer", True),
    ("s3:DeleteObject", "regseal/staging/layer", True),
    ("s3:GetObject", "regseal/policy.json", True),
    ("s3:PutObject", "regseal/policy.json", False),
    ("s3:DeleteObject", "regseal/policy.json", False),
    ("s3:PutObject", "tuf/team-a.json", True),
    ("s3:DeleteObject", "tuf/1.root.json", False),
    ("s3:GetObject", "elsewhere/object", False),
    ("s3:PutObject", "docker/registry/v2-other/blobs/x", False),
]


@pytest.mark.parametrize(("action", "key", "expected"), S3_ACCESS)
def test_seal_role_s3_access_with_default_root(
    action: str, key: str, expected: bool
) -> None:
    stack = stack_for(DEMO)
    arn = f"arn:aws:s3:::{BUCKET}/{key}"

    assert allowed(stack, seal_role(stack), action, arn) is expected


@pytest.mark.parametrize(
    ("action", "arn", "expected"),
    [
        ("s3:GetObject", f"{BUCKET}/registry/prod/{DEFAULT_ROOT}blobs/x", True),
        ("s3:GetObject", f"{BUCKET}/{DEFAULT_ROOT}blobs/x", False),
        ("s3:DeleteObject", f"{BUCKET}/registry/prod/{DEFAULT_ROOT}blobs/x", False),
        ("s3:PutObject", "example-tuf/tuf/2.team-a.json", True),
        ("s3:PutObject", f"{BUCKET}/tuf/2.team-a.json", False),
        ("s3:ListBucket", "example-tuf", True),
        ("s3:ListBucket", "another-bucket", False),
    ],
)
def test_seal_role_s3_access_with_root_directory_and_metadata_bucket(
    action: str, arn: str, expected: bool
) -> None:
    stack = stack_for(IMPORTED)

    assert allowed(stack, seal_role(stack), action, f"arn:aws:s3:::{arn}") is expected


def test_policy_is_read_where_it_is_configured() -> None:
    ssm = stack_for(IMPORTED)
    s3 = stack_for(POLICY_ELSEWHERE)
    parameter = "arn:aws:ssm:us-east-1:111122223333:parameter/regseal/policy"
    policy_object = "arn:aws:s3:::example-config/regseal/policy.json"

    assert allowed(ssm, seal_role(ssm), "ssm:GetParameter", parameter)
    assert not allowed(ssm, seal_role(ssm), "ssm:GetParameter", parameter + "-x")
    assert allowed(s3, seal_role(s3), "s3:GetObject", policy_object)
    assert not allowed(s3, seal_role(s3), "s3:PutObject", policy_object)
    assert not allowed(s3, seal_role(s3), "ssm:GetParameter", parameter)


# --------------------------------------------------------- registry events

TAG_AND_REVISION_LINKS = [
    "repositories/team-a/app/_manifests/tags/1.0/current/link",
    "repositories/team-a/tools/app/_manifests/tags/v1.2.3-rc_1/current/link",
    "repositories/app/_manifests/tags/latest/current/link",
    f"repositories/team-a/app/_manifests/revisions/sha256/{HEX}/link",
]
OTHER_KEYS = [
    f"repositories/team-a/app/_layers/sha256/{HEX}/link",
    f"repositories/team-a/app/_manifests/tags/1.0/index/sha256/{HEX}/link",
    f"blobs/sha256/ef/{HEX}/data",
    "repositories/team-a/app/_uploads/5f1e/data",
    "repositories/team-a/app/_uploads/5f1e/startedat",
    "repositories/team-a/app/_uploads/5f1e/hashstates/sha256/0",
]
ROOTS = {"/": "", "/registry/prod": "registry/prod/"}


@pytest.mark.parametrize("root", sorted(ROOTS))
@pytest.mark.parametrize("key", TAG_AND_REVISION_LINKS)
def test_rule_selects_tag_and_revision_links(root: str, key: str) -> None:
    stack = stack_for({**DEMO, "RegistryRootDirectory": root})
    prefix = ROOTS[root] + DEFAULT_ROOT

    assert pattern_matches(rule_pattern(stack), object_created(prefix + key))


@pytest.mark.parametrize("root", sorted(ROOTS))
@pytest.mark.parametrize("key", OTHER_KEYS)
def test_rule_ignores_layer_links_index_links_blobs_and_uploads(
    root: str, key: str
) -> None:
    stack = stack_for({**DEMO, "RegistryRootDirectory": root})
    prefix = ROOTS[root] + DEFAULT_ROOT

    assert not pattern_matches(rule_pattern(stack), object_created(prefix + key))


@pytest.mark.parametrize(
    ("root", "key"),
    [
        ("/", f"registry/prod/{DEFAULT_ROOT}{TAG_AND_REVISION_LINKS[0]}"),
        ("/registry/prod", DEFAULT_ROOT + TAG_AND_REVISION_LINKS[0]),
        ("/", "regseal/staging/_manifests/tags/1.0/current/link"),
        ("/", "tuf/repositories/x/_manifests/revisions/sha256/y/link"),
    ],
)
def test_rule_ignores_links_outside_the_registry_root(root: str, key: str) -> None:
    stack = stack_for({**DEMO, "RegistryRootDirectory": root})

    assert not pattern_matches(rule_pattern(stack), object_created(key))


def test_rule_ignores_other_buckets_and_deletions() -> None:
    pattern = rule_pattern(stack_for(DEMO))
    key = DEFAULT_ROOT + TAG_AND_REVISION_LINKS[0]
    deleted = object_created(key)
    deleted["detail-type"] = "Object Deleted"

    assert pattern_matches(pattern, object_created(key))
    assert not pattern_matches(pattern, object_created(key, bucket="other-bucket"))
    assert not pattern_matches(pattern, deleted)


def test_rule_wildcards_are_valid_eventbridge_wildcards() -> None:
    for root in ROOTS:
        pattern = rule_pattern(stack_for({**DEMO, "RegistryRootDirectory": root}))
        for matcher in pattern["detail"]["object"]["key"]:
            (operator,) = matcher
            assert operator == "wildcard"
            wildcard_regex(matcher["wildcard"])


# ------------------------------------------------------------ event samples


@pytest.mark.parametrize(
    "name",
    [
        "eventbridge-object-created-tag-link.json",
        "eventbridge-object-created-revision-link.json",
    ],
)
def test_eventbridge_samples_match_the_rule(name: str) -> None:
    event = sample(name)
    link = f"sha256:{HEX}".encode()

    assert pattern_matches(rule_pattern(stack_for(DEMO)), event)
    assert event["detail"]["object"]["size"] == len(link) == 71
    assert (
        event["detail"]["object"]["etag"]
        == hashlib.md5(link, usedforsecurity=False).hexdigest()
    )


@pytest.mark.parametrize(
    ("name", "bodies"),
    [
        ("sqs-eventbridge-tag-link.json", ["eventbridge-object-created-tag-link.json"]),
        (
            "sqs-eventbridge-push.json",
            [
                "eventbridge-object-created-revision-link.json",
                "eventbridge-object-created-tag-link.json",
            ],
        ),
    ],
)
def test_sqs_samples_carry_the_eventbridge_events_verbatim(
    name: str, bodies: list[str]
) -> None:
    records = sample(name)["Records"]

    assert [json.loads(r["body"]) for r in records] == [sample(b) for b in bodies]
    for record in records:
        assert record["eventSource"] == "aws:sqs"
        assert (
            record["md5OfBody"]
            == hashlib.md5(record["body"].encode(), usedforsecurity=False).hexdigest()
        )


# -------------------------------------------------------- function settings


def test_handler_environment_for_the_demo_stack() -> None:
    variables = seal_function(stack_for(DEMO)).properties["Environment"]["Variables"]

    assert variables == {
        "REGSEAL_BUCKET": BUCKET,
        "REGSEAL_REGISTRY_ROOT": "/",
        "REGSEAL_STATE_PREFIX": "regseal/",
        "REGSEAL_POLICY": f"s3://{BUCKET}/regseal/policy.json",
        "REGSEAL_METADATA_BUCKET": BUCKET,
        "REGSEAL_METADATA_PREFIX": "tuf/",
        "POWERTOOLS_SERVICE_NAME": "seal",
        "POWERTOOLS_METRICS_NAMESPACE": "regseal",
        "POWERTOOLS_LOGGER_LOG_EVENT": "false",
        "POWERTOOLS_TRACER_CAPTURE_RESPONSE": "false",
        "POWERTOOLS_LOG_LEVEL": "INFO",
        "LOG_LEVEL": "INFO",
    }


def test_handler_environment_follows_the_parameters() -> None:
    variables = seal_function(stack_for(IMPORTED)).properties["Environment"][
        "Variables"
    ]

    assert variables["REGSEAL_REGISTRY_ROOT"] == "/registry/prod"
    assert variables["REGSEAL_POLICY"] == "ssm:/regseal/policy"
    assert variables["REGSEAL_METADATA_BUCKET"] == "example-tuf"


def test_function_runs_traced_on_python_312_with_the_layer(stack: Stack) -> None:
    function = seal_function(stack)
    (layer_ref,) = function.properties["Layers"]
    layer = stack.target(layer_ref, "AWS::Lambda::LayerVersion")
    architecture = stack.parameters["Architecture"]

    assert function.properties["Runtime"] == "python3.12"
    assert function.properties["Handler"] == "app.handler"
    assert function.properties["TracingConfig"] == {"Mode": "Active"}
    assert function.properties["Architectures"] == [architecture]
    assert layer.properties["CompatibleArchitectures"] == [architecture]
    assert layer.properties["CompatibleRuntimes"] == ["python3.12"]


def test_layer_is_built_by_sam_for_the_function_architecture() -> None:
    source = load_template()["Resources"]["RegsealLayer"]

    assert source["Properties"]["ContentUri"] == "layers/regseal/"
    assert source["Metadata"] == {
        "BuildMethod": "python3.12",
        "BuildArchitecture": {"Ref": "Architecture"},
    }


# ------------------------------------------------------------------- alarms


@pytest.mark.parametrize(
    ("parameters", "actions"),
    [(DEMO, None), (IMPORTED, [IMPORTED["AlarmTopicArn"]])],
)
def test_alarms_watch_dead_letters_errors_and_throttles(
    parameters: dict[str, str], actions: list[str] | None
) -> None:
    stack = stack_for(parameters)
    (mapping,) = stack.of_type("AWS::Lambda::EventSourceMapping")
    queue = stack.target(mapping.properties["EventSourceArn"], "AWS::SQS::Queue")
    dead_letter = queue.properties["RedrivePolicy"]["deadLetterTargetArn"]
    function = Att(seal_function(stack).logical_id, "Ref")
    watched = {
        (
            a.properties["MetricName"],
            str(a.properties["Dimensions"][0]["Value"]),
        )
        for a in stack.of_type("AWS::CloudWatch::Alarm")
    }

    assert watched == {
        ("ApproximateNumberOfMessagesVisible", f"<{dead_letter.logical_id}.QueueName>"),
        ("ApproximateAgeOfOldestMessage", f"<{queue.logical_id}.QueueName>"),
        ("Errors", str(function)),
        ("Throttles", str(function)),
    }
    for alarm in stack.of_type("AWS::CloudWatch::Alarm"):
        assert alarm.properties.get("AlarmActions") == actions
        assert alarm.properties.get("OKActions") == actions


# ------------------------------------------------------------------ outputs


def test_outputs_name_what_operators_and_key_owners_need() -> None:
    demo = stack_for(DEMO).outputs
    imported = stack_for(IMPORTED).outputs

    assert set(demo) == {
        "SealQueueUrl",
        "SealDeadLetterQueueUrl",
        "SealFunctionName",
        "SealFunctionRoleArn",
        "RegistryLinksRuleArn",
        "RegsealLayerArn",
        "TeamKeyArns",
        "TeamSigningKeyArns",
        "PolicyLocation",
        "MetadataUrl",
    }
    assert demo["TeamKeyArns"] == Att("DemoTeamKey", "Arn")
    assert demo["MetadataUrl"] == f"https://{BUCKET}.s3.us-east-1.amazonaws.com/tuf/"
    assert imported["TeamKeyArns"] == IMPORTED["TeamKeyArns"]
    assert (
        imported["MetadataUrl"] == "https://example-tuf.s3.us-east-1.amazonaws.com/tuf/"
    )


def test_samconfig_example_sets_every_parameter_to_a_valid_value() -> None:
    config = tomllib.loads((ROOT / "infra" / "samconfig.example.toml").read_text())
    overrides = config["default"]["deploy"]["parameters"]["parameter_overrides"]
    values = dict(re.findall(r'(\w+)="([^"]*)"', overrides))

    assert set(values) == set(load_template()["Parameters"])
    stack = load_stack(values)
    assert stack.parameters["RegistryBucketName"] == values["RegistryBucketName"]
