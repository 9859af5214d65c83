"""The deployable stack (template.yaml), transformed and evaluated offline.

Each test reads the CloudFormation that SAM would deploy for one parameter set
(see cfn_model) and checks one property the design relies on: logs kept,
poison messages parked, keys used only as the KMS model allows (team keys by
the seal function, snapshot and timestamp keys by the TUF function), no grant
wider than needed, the rule delivering exactly the registry's tag and revision
links, and the functions configured with the variables their code reads.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from regseal.cli import build_parser
from regseal.settings import Settings
from regseal.tuf.messages import TargetsChanged
from regseal.tuf.settings import TufSettings
from regseal.tuf.store import MetadataLocation
from tests.support.cfn_model import (
    Att,
    Resource,
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

SNAPSHOT_ARN = (
    "arn:aws:kms:us-east-1:111122223333:key/7777aaaa-12ab-34cd-56ef-1234567890ab"
)
TIMESTAMP_ARN = (
    "arn:aws:kms:us-east-1:111122223333:key/8888bbbb-12ab-34cd-56ef-1234567890ab"
)
OPERATORS = (
    "arn:aws:iam::111122223333:role/tuf-admin,"
    "arn:aws:iam::111122223333:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_Ops"
)

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
    "SnapshotKeyArn": SNAPSHOT_ARN,
    "TimestampKeyArn": TIMESTAMP_ARN,
    "TufEnabled": "true",
    "MetadataBucketName": "example-tuf",
    "PolicyLocation": "ssm:/regseal/policy",
    "AlarmTopicArn": "arn:aws:sns:us-east-1:111122223333:regseal-alarms",
    "Architecture": "x86_64",
}
POLICY_ELSEWHERE = {
    "RegistryBucketName": BUCKET,
    "PolicyLocation": "s3://example-config/regseal/policy.json",
}
# Demo keys, TUF on, operators named, and the TUF function re-signing teams.
RESIGNING = {
    "RegistryBucketName": BUCKET,
    "TufEnabled": "true",
    "TufOperatorRoleArns": OPERATORS,
    "TufResignsTeamRoles": "true",
}
SCENARIOS = {
    "demo": DEMO,
    "imported": IMPORTED,
    "policy-elsewhere": POLICY_ELSEWHERE,
    "resigning": RESIGNING,
}
NOT_RESIGNING = sorted(k for k, v in SCENARIOS.items() if v is not RESIGNING)

# Resource "*" is allowed only for these actions, because AWS offers no
# resource-level permission for them.
STAR_RESOURCE_ACTIONS = {
    "xray:PutTraceSegments": "X-Ray has no resource-level permissions",
    "xray:PutTelemetryRecords": "X-Ray has no resource-level permissions",
}
FUNCTIONS = ("SealFunction", "TufFunction")
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
SIGN_CONDITION = {"StringEquals": {"kms:SigningAlgorithm": "ECDSA_SHA_256"}}


@cache
def _stack(items: tuple[tuple[str, str], ...]) -> Stack:
    return load_stack(dict(items))


def stack_for(parameters: dict[str, str]) -> Stack:
    return _stack(tuple(sorted(parameters.items())))


@pytest.fixture(params=sorted(SCENARIOS), name="stack")
def _any_stack(request: pytest.FixtureRequest) -> Stack:
    return stack_for(SCENARIOS[request.param])


def seal_function(stack: Stack) -> Resource:
    return stack.target(Att("SealFunction", "Ref"), "AWS::Lambda::Function")


def tuf_function(stack: Stack) -> Resource:
    return stack.target(Att("TufFunction", "Ref"), "AWS::Lambda::Function")


def role_of(stack: Stack, function: Resource) -> str:
    role = function.properties["Role"]
    return str(stack.target(role, "AWS::IAM::Role").logical_id)


def seal_role(stack: Stack) -> str:
    return role_of(stack, seal_function(stack))


def tuf_role(stack: Stack) -> str:
    return role_of(stack, tuf_function(stack))


def mapping_of(stack: Stack, function: Resource) -> Resource:
    """The one event source mapping feeding ``function``."""
    (mapping,) = [
        m
        for m in stack.of_type("AWS::Lambda::EventSourceMapping")
        if m.properties["FunctionName"] == Att(function.logical_id, "Ref")
    ]
    return mapping


def queue_of(stack: Stack, function: Resource) -> Resource:
    arn = mapping_of(stack, function).properties["EventSourceArn"]
    return stack.target(arn, "AWS::SQS::Queue")


def registry_rule(stack: Stack) -> Resource:
    return stack.target(Att("RegistryLinksRule", "Ref"), "AWS::Events::Rule")


def schedule_rule(stack: Stack) -> Resource:
    """The rule whose target is the TUF function."""
    (rule,) = [
        r
        for r in stack.of_type("AWS::Events::Rule")
        if [t["Arn"] for t in r.properties["Targets"]] == [Att("TufFunction", "Arn")]
    ]
    return rule


def online_keys(stack: Stack) -> dict[str, Any]:
    """Snapshot and timestamp keys as the stack's statements name them."""
    keys = {}
    for role, created, given in (
        ("snapshot", "TufSnapshotKey", "SnapshotKeyArn"),
        ("timestamp", "TufTimestampKey", "TimestampKeyArn"),
    ):
        parameter = stack.parameters[given]
        keys[role] = parameter if parameter else Att(created, "Arn")
    return keys


def team_signing_keys(stack: Stack) -> tuple[Any, ...]:
    given = [k for k in stack.parameters["TeamSigningKeyArns"] if k]
    return tuple(given) if given else (Att("DemoTeamSigningKey", "Arn"),)


def allowed_resources(stack: Stack, role: str, action: str) -> set[Any]:
    return {
        resource
        for s in iam_statements(stack)
        if role in s.roles
        and s.effect == "Allow"
        and any(iam_glob_matches(a, action) for a in s.actions)
        for resource in s.resources
    }


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
    pattern: dict[str, Any] = registry_rule(stack).properties["EventPattern"]
    return pattern


def variables(function: Resource) -> dict[str, Any]:
    found: dict[str, Any] = function.properties["Environment"]["Variables"]
    return found


# ------------------------------------------------------------------ logging


def test_every_function_logs_to_its_own_log_group_with_retention(
    stack: Stack,
) -> None:
    functions = stack.of_type("AWS::Lambda::Function")
    groups = set()
    assert {f.logical_id for f in functions} == set(FUNCTIONS)
    for function in functions:
        group_ref = function.properties["LoggingConfig"]["LogGroup"]
        group = stack.target(group_ref, "AWS::Logs::LogGroup")
        groups.add(group.logical_id)

        assert (
            group.properties["RetentionInDays"] == stack.parameters["LogRetentionDays"]
        )
        assert group.properties["LogGroupName"].startswith("/regseal/regseal-test/")
    assert len(groups) == len(functions)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_each_role_writes_only_to_its_own_log_group(stack: Stack, name: str) -> None:
    function = stack.resources[name]
    group = function.properties["LoggingConfig"]["LogGroup"]
    role = role_of(stack, function)
    log_statements = [
        s
        for s in iam_statements(stack)
        if role in s.roles and any(a.startswith("logs:") for a in s.actions)
    ]

    assert log_statements
    for statement in log_statements:
        assert statement.resources == (Att(group.logical_id, "Arn"),)


# ------------------------------------------------------------------- queues

# Function -> the parameters that configure its queue and mapping.
QUEUE_PARAMETERS = {
    "SealFunction": ("MaxReceiveCount", "BatchSize", "MaxBatchingWindowSeconds"),
    "TufFunction": ("TufMaxReceiveCount", "TufBatchSize", "TufBatchingWindowSeconds"),
}


def test_every_queue_has_a_dead_letter_queue_or_is_one(stack: Stack) -> None:
    queues = {q.logical_id: q for q in stack.of_type("AWS::SQS::Queue")}
    dead_letter_ids = {
        stack.target(
            q.properties["RedrivePolicy"]["deadLetterTargetArn"], q.type
        ).logical_id
        for q in queues.values()
        if "RedrivePolicy" in q.properties
    }
    sources = {i for i, q in queues.items() if "RedrivePolicy" in q.properties}

    assert sources == {"SealQueue", "TufQueue"}
    assert dead_letter_ids == {"SealDeadLetterQueue", "TufDeadLetterQueue"}
    assert sources | dead_letter_ids == set(queues)
    for queue in queues.values():
        assert queue.properties["SqsManagedSseEnabled"] is True


@pytest.mark.parametrize("name", FUNCTIONS)
def test_every_queue_feeding_a_function_has_a_dead_letter_queue_with_redrive(
    stack: Stack, name: str
) -> None:
    queue = queue_of(stack, stack.resources[name])
    redrive = queue.properties["RedrivePolicy"]
    dead_letter = stack.target(redrive["deadLetterTargetArn"], "AWS::SQS::Queue")
    receive_count = QUEUE_PARAMETERS[name][0]

    assert dead_letter.logical_id != queue.logical_id
    assert redrive["maxReceiveCount"] == stack.parameters[receive_count]
    assert int(dead_letter.properties["MessageRetentionPeriod"]) > int(
        queue.properties["MessageRetentionPeriod"]
    )


@pytest.mark.parametrize("name", FUNCTIONS)
def test_queue_visibility_outlasts_six_timeouts_and_the_batching_window(
    name: str,
) -> None:
    stack = stack_for(DEMO)
    function = stack.resources[name]
    queue = queue_of(stack, function)
    window = QUEUE_PARAMETERS[name][2]
    timeout = int(function.properties["Timeout"])
    longest_window = int(load_template()["Parameters"][window]["MaxValue"])

    assert int(queue.properties["VisibilityTimeout"]) >= 6 * timeout + longest_window


@pytest.mark.parametrize("name", FUNCTIONS)
def test_functions_report_partial_batch_failures(stack: Stack, name: str) -> None:
    mapping = mapping_of(stack, stack.resources[name])
    _, batch_size, window = QUEUE_PARAMETERS[name]

    assert mapping.properties["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping.properties["BatchSize"] == stack.parameters[batch_size]
    assert (
        mapping.properties["MaximumBatchingWindowInSeconds"] == stack.parameters[window]
    )


def test_tuf_batches_above_ten_messages_always_have_a_batching_window() -> None:
    parameters = load_template()["Parameters"]

    assert parameters["TufBatchSize"]["MaxValue"] > 10
    assert parameters["TufBatchingWindowSeconds"]["MinValue"] >= 1


def test_every_queue_refuses_insecure_transport(stack: Stack) -> None:
    covered: set[str] = set()
    for policy in stack.of_type("AWS::SQS::QueuePolicy"):
        statements = policy.properties["PolicyDocument"]["Statement"]
        (deny,) = [s for s in statements if s["Effect"] == "Deny"]
        queues = [
            stack.target(q, "AWS::SQS::Queue") for q in policy.properties["Queues"]
        ]
        resources = (
            deny["Resource"]
            if isinstance(deny["Resource"], list)
            else [deny["Resource"]]
        )

        assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        assert deny["Action"] == "sqs:*"
        assert sorted(map(str, resources)) == sorted(
            str(Att(q.logical_id, "Arn")) for q in queues
        )
        covered.update(q.logical_id for q in queues)

    assert covered == {q.logical_id for q in stack.of_type("AWS::SQS::Queue")}


def test_queue_policies_let_only_the_registry_rule_send(stack: Stack) -> None:
    allows = [
        (policy, s)
        for policy in stack.of_type("AWS::SQS::QueuePolicy")
        for s in policy.properties["PolicyDocument"]["Statement"]
        if s["Effect"] == "Allow"
    ]

    assert sorted(p.logical_id for p, _ in allows) == [
        "SealDeadLetterQueuePolicy",
        "SealQueuePolicy",
    ]
    for _, allow in allows:
        assert allow["Principal"] == {"Service": "events.amazonaws.com"}
        assert allow["Action"] == "sqs:SendMessage"
        assert allow["Condition"] == {
            "ArnEquals": {"aws:SourceArn": Att("RegistryLinksRule", "Arn")}
        }


def test_rule_targets_the_seal_queue_with_the_dead_letter_queue(stack: Stack) -> None:
    queue = queue_of(stack, seal_function(stack))
    (target,) = registry_rule(stack).properties["Targets"]

    assert target["Arn"] == Att(queue.logical_id, "Arn")
    assert (
        target["DeadLetterConfig"]["Arn"]
        == (queue.properties["RedrivePolicy"]["deadLetterTargetArn"])
    )


def test_only_the_seal_role_sends_targets_changed_messages(stack: Stack) -> None:
    tuf_queue = Att(queue_of(stack, tuf_function(stack)).logical_id, "Arn")
    senders = {
        role
        for s in iam_statements(stack)
        if s.effect == "Allow" and "sqs:SendMessage" in s.actions
        for role in s.roles
    }

    assert senders == {seal_role(stack)}
    assert allowed_resources(stack, seal_role(stack), "sqs:SendMessage") == {tuf_queue}


def test_the_seal_role_changes_visibility_on_its_own_queue_only(stack: Stack) -> None:
    seal_queue = Att(queue_of(stack, seal_function(stack)).logical_id, "Arn")
    changers = {
        role
        for s in iam_statements(stack)
        if s.effect == "Allow" and "sqs:ChangeMessageVisibility" in s.actions
        for role in s.roles
    }

    assert changers == {seal_role(stack)}
    assert allowed_resources(
        stack, seal_role(stack), "sqs:ChangeMessageVisibility"
    ) == {seal_queue}
    env = variables(seal_function(stack))
    assert env["REGSEAL_QUEUE_URL"] == Att(seal_queue.logical_id, "Ref")


# ---------------------------------------------------------------- schedule


@pytest.mark.parametrize(
    ("parameters", "expression", "state"),
    [
        (DEMO, "rate(15 minutes)", "DISABLED"),
        ({**DEMO, "TufEnabled": "true"}, "rate(15 minutes)", "ENABLED"),
        (
            {**DEMO, "TufEnabled": "true", "TufScheduleRate": "1 hour"},
            "rate(1 hour)",
            "ENABLED",
        ),
    ],
)
def test_schedule_invokes_the_tuf_function_at_the_configured_rate(
    parameters: dict[str, str], expression: str, state: str
) -> None:
    stack = stack_for(parameters)
    rule = schedule_rule(stack)
    (permission,) = [
        p
        for p in stack.of_type("AWS::Lambda::Permission")
        if p.properties["FunctionName"] == Att("TufFunction", "Ref")
    ]

    assert rule.properties["ScheduleExpression"] == expression
    assert rule.properties["State"] == state
    assert "EventPattern" not in rule.properties
    assert permission.properties["Principal"] == "events.amazonaws.com"
    assert permission.properties["SourceArn"] == Att(rule.logical_id, "Arn")


@pytest.mark.parametrize("rate", ["1 minutes", "0 minutes", "15 minute", "15m"])
def test_schedule_rate_refuses_what_eventbridge_refuses(rate: str) -> None:
    with pytest.raises(AssertionError, match="TufScheduleRate"):
        load_stack({**DEMO, "TufScheduleRate": rate})


def test_tuf_function_runs_alone() -> None:
    function = tuf_function(stack_for(DEMO))

    assert function.properties["ReservedConcurrentExecutions"] == 1
    assert (
        "ReservedConcurrentExecutions" not in seal_function(stack_for(DEMO)).properties
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
    allows = [s for s in iam_statements(stack) if s.effect == "Allow"]
    encrypt = [s for s in allows if "kms:Encrypt" in s.actions]
    sign = {s.owner: s.resources for s in allows if "kms:Sign" in s.actions}

    assert stack.of_type("AWS::KMS::Key") == []
    assert [s.resources for s in encrypt] == [tuple(IMPORTED["TeamKeyArns"].split(","))]
    assert sign == {
        "SealKeyUsePolicy": (IMPORTED["TeamSigningKeyArns"],),
        "TufKeyUsePolicy": (SNAPSHOT_ARN, TIMESTAMP_ARN),
    }


def test_kms_statements_bind_encryption_context_or_signing_algorithm(
    stack: Stack,
) -> None:
    for statement in iam_statements(stack):
        uses_keys = [
            c
            for c in KMS_CRYPTO
            if any(iam_glob_matches(a, c) for a in statement.actions)
        ]
        # An unconditional deny only narrows.
        if not uses_keys or statement.effect == "Deny":
            continue
        if uses_keys == ["kms:Sign"]:
            assert statement.condition == SIGN_CONDITION
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


def test_tuf_role_only_signs_and_reads_public_keys(stack: Stack) -> None:
    role = tuf_role(stack)
    actions = {
        a
        for s in iam_statements(stack)
        if role in s.roles and s.effect == "Allow"
        for a in s.actions
        if a.startswith("kms:")
    }

    assert actions == {"kms:Sign", "kms:GetPublicKey"}
    for forbidden in KMS_CRYPTO:
        if forbidden != "kms:Sign":
            assert not any(iam_glob_matches(a, forbidden) for a in actions), forbidden


@pytest.mark.parametrize("scenario", NOT_RESIGNING)
def test_tuf_role_signs_only_with_snapshot_and_timestamp_keys(scenario: str) -> None:
    stack = stack_for(SCENARIOS[scenario])
    online = set(online_keys(stack).values())
    role = tuf_role(stack)

    assert allowed_resources(stack, role, "kms:Sign") == online
    assert allowed_resources(stack, role, "kms:GetPublicKey") == online
    assert variables(tuf_function(stack))["REGSEAL_TUF_RESIGN_TEAMS"] == "false"


def test_tuf_role_signs_with_team_keys_only_when_it_resigns_team_roles() -> None:
    resigning = stack_for(RESIGNING)
    demo = stack_for(DEMO)
    team_key = Att("DemoTeamSigningKey", "Arn")

    def tuf_sids(stack: Stack) -> list[str]:
        key = stack.resources["DemoTeamSigningKey"]
        return [
            s["Sid"]
            for s in key.properties["KeyPolicy"]["Statement"]
            if s.get("Condition", {}).get("ArnEquals", {}).get("aws:PrincipalArn")
            == Att(tuf_role(stack), "Arn")
        ]

    assert allowed_resources(resigning, tuf_role(resigning), "kms:Sign") == {
        *online_keys(resigning).values(),
        team_key,
    }
    assert variables(tuf_function(resigning))["REGSEAL_TUF_RESIGN_TEAMS"] == "true"
    assert tuf_sids(resigning) == ["TufFunctionResignsTeamTargets"]
    assert team_key not in allowed_resources(demo, tuf_role(demo), "kms:Sign")
    assert tuf_sids(demo) == []


def test_seal_role_cannot_sign_with_snapshot_or_timestamp_keys(stack: Stack) -> None:
    role = seal_role(stack)
    online = set(online_keys(stack).values())
    signable = allowed_resources(stack, role, "kms:Sign")
    denied = {
        r
        for s in iam_statements(stack)
        if role in s.roles and s.effect == "Deny" and "kms:Sign" in s.actions
        for r in s.resources
    }

    assert signable == set(team_signing_keys(stack))
    assert not signable & online
    assert not any(
        iam_glob_matches(r, k)
        for r in signable
        if isinstance(r, str)
        for k in online
        if isinstance(k, str)
    )
    assert denied == online


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


@pytest.mark.parametrize(
    ("parameters", "operators"),
    [(DEMO, None), (RESIGNING, OPERATORS.split(","))],
)
@pytest.mark.parametrize("key_id", ["TufSnapshotKey", "TufTimestampKey"])
def test_online_keys_sign_for_the_tuf_role_and_named_operators_only(
    parameters: dict[str, str], operators: list[str] | None, key_id: str
) -> None:
    stack = stack_for(parameters)
    key = stack.resources[key_id]
    statements = key.properties["KeyPolicy"]["Statement"]
    signers = [
        s["Condition"]["ArnEquals"]["aws:PrincipalArn"]
        for s in statements
        if s["Effect"] == "Allow" and "kms:Sign" in s["Action"]
    ]
    denies = [s for s in statements if s["Effect"] == "Deny"]

    assert key.properties["KeySpec"] == "ECC_NIST_P256"
    assert key.properties["KeyUsage"] == "SIGN_VERIFY"
    assert signers == [Att(tuf_role(stack), "Arn"), *([operators] if operators else [])]
    for statement in statements:
        if statement["Effect"] == "Allow" and "kms:Sign" in statement["Action"]:
            assert (
                statement["Condition"]["StringEquals"] == SIGN_CONDITION["StringEquals"]
            )
    assert [(d["Action"], d["Condition"]) for d in denies] == [
        ("kms:Sign", {"ArnEquals": {"aws:PrincipalArn": Att(seal_role(stack), "Arn")}})
    ]


def test_operators_may_sign_the_first_team_role_with_the_demo_key() -> None:
    statements = (
        stack_for(RESIGNING)
        .resources["DemoTeamSigningKey"]
        .properties["KeyPolicy"]["Statement"]
    )
    (operators,) = [s for s in statements if s["Sid"] == "OperatorsSignWithTufCommands"]
    demo_sids = [
        s["Sid"]
        for s in stack_for(DEMO)
        .resources["DemoTeamSigningKey"]
        .properties["KeyPolicy"]["Statement"]
    ]

    assert operators["Action"] == "kms:Sign"
    assert operators["Condition"] == {
        "ArnEquals": {"aws:PrincipalArn": OPERATORS.split(",")},
        **SIGN_CONDITION,
    }
    assert "OperatorsSignWithTufCommands" not in demo_sids


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


def test_created_keys_survive_stack_deletion() -> None:
    source = load_template()["Resources"]
    keys = {i: r for i, r in source.items() if r["Type"] == "AWS::KMS::Key"}

    assert {i: k["Properties"]["KeySpec"] for i, k in keys.items()} == {
        "DemoTeamKey": "SYMMETRIC_DEFAULT",
        "DemoTeamSigningKey": "ECC_NIST_P256",
        "TufSnapshotKey": "ECC_NIST_P256",
        "TufTimestampKey": "ECC_NIST_P256",
    }
    for key in keys.values():
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
        for resource in statement.resources:
            if isinstance(resource, str) and resource.endswith(":::*"):
                raise AssertionError(f"every bucket: {statement}")
        if "*" in statement.resources:
            starred.extend(statement.actions)

    # Each function role sends traces.
    assert sorted(starred) == sorted(list(STAR_RESOURCE_ACTIONS) * 2)


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
    ("s3:GetObject", "tuf/7.snapshot.json", True),
    ("s3:PutObject", "tuf/2.team-a.json", True),
    ("s3:PutObject", "tuf/3.team-a.bins-v3-0f.json", True),
    ("s3:PutObject", "tuf/2.root.json", False),
    ("s3:PutObject", "tuf/2.targets.json", False),
    ("s3:PutObject", "tuf/8.snapshot.json", False),
    ("s3:PutObject", "tuf/timestamp.json", False),
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
    ("action", "arn", "context", "expected"),
    [
        ("s3:GetObject", f"{BUCKET}/registry/prod/{DEFAULT_ROOT}blobs/x", {}, True),
        ("s3:GetObject", f"{BUCKET}/{DEFAULT_ROOT}blobs/x", {}, False),
        ("s3:DeleteObject", f"{BUCKET}/registry/prod/{DEFAULT_ROOT}blobs/x", {}, False),
        ("s3:PutObject", "example-tuf/tuf/2.team-a.json", {}, True),
        ("s3:PutObject", "example-tuf/tuf/2.targets.json", {}, False),
        ("s3:PutObject", f"{BUCKET}/tuf/2.team-a.json", {}, False),
        ("s3:ListBucket", BUCKET, {}, True),
        ("s3:ListBucket", "example-tuf", {"s3:prefix": "tuf/3.team-a.json"}, True),
        ("s3:ListBucket", "example-tuf", {"s3:prefix": "other/"}, False),
        ("s3:ListBucket", "example-tuf", {}, False),
        ("s3:ListBucket", "another-bucket", {}, False),
    ],
)
def test_seal_role_s3_access_with_root_directory_and_metadata_bucket(
    action: str, arn: str, context: dict[str, str], expected: bool
) -> None:
    stack = stack_for(IMPORTED)
    role = seal_role(stack)

    assert allowed(stack, role, action, f"arn:aws:s3:::{arn}", context) is expected


# What the TUF function touches: every role read, only online roles written.
TUF_S3_ACCESS = [
    ("s3:GetObject", "tuf/1.root.json", True, True),
    ("s3:GetObject", "tuf/5.team-a.bins-v3-0f.json", True, True),
    ("s3:GetObject", "tuf/timestamp.json", True, True),
    ("s3:PutObject", "tuf/8.snapshot.json", True, True),
    ("s3:PutObject", "tuf/timestamp.json", True, True),
    ("s3:PutObject", "tuf/3.team-a.json", False, True),
    ("s3:PutObject", "tuf/4.team-a.bins-v3-0f.json", False, True),
    ("s3:PutObject", "tuf/2.root.json", False, False),
    ("s3:PutObject", "tuf/2.targets.json", False, False),
    ("s3:DeleteObject", "tuf/timestamp.json", False, False),
    ("s3:DeleteObject", "tuf/3.snapshot.json", False, False),
    ("s3:GetObject", f"{REPO}/_manifests/tags/1.0/current/link", False, False),
    ("s3:PutObject", BLOB, False, False),
    ("s3:GetObject", "regseal/policy.json", False, False),
    ("s3:PutObject", "regseal/tuf/timestamp.json", False, False),
]


@pytest.mark.parametrize(("action", "key", "plain", "resigning"), TUF_S3_ACCESS)
def test_tuf_role_s3_access(
    action: str, key: str, plain: bool, resigning: bool
) -> None:
    demo = stack_for(DEMO)
    resigner = stack_for(RESIGNING)
    arn = f"arn:aws:s3:::{BUCKET}/{key}"

    assert allowed(demo, tuf_role(demo), action, arn) is plain
    assert allowed(resigner, tuf_role(resigner), action, arn) is resigning


@pytest.mark.parametrize(
    ("parameters", "bucket"), [(DEMO, BUCKET), (IMPORTED, "example-tuf")]
)
@pytest.mark.parametrize(
    ("context", "expected"),
    [
        ({"s3:prefix": "tuf/9.snapshot.json"}, True),
        ({"s3:prefix": "tuf/"}, True),
        ({"s3:prefix": "docker/registry/v2/"}, False),
        ({"s3:prefix": "tufx/1.root.json"}, False),
        ({}, False),
    ],
)
def test_tuf_role_lists_only_the_metadata_prefix(
    parameters: dict[str, str], bucket: str, context: dict[str, str], expected: bool
) -> None:
    stack = stack_for(parameters)
    role = tuf_role(stack)

    assert allowed(stack, role, "s3:ListBucket", f"arn:aws:s3:::{bucket}", context) is (
        expected
    )
    assert not allowed(stack, role, "s3:ListBucket", "arn:aws:s3:::other", context)


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
    assert not allowed(s3, tuf_role(s3), "s3:GetObject", policy_object)


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


def test_rule_takes_deletions_of_links_and_ignores_other_buckets() -> None:
    # A deleted tag link reaches the seal function so that the tag's TUF
    # target goes too; other detail types and buckets never do.
    pattern = rule_pattern(stack_for(DEMO))
    key = DEFAULT_ROOT + TAG_AND_REVISION_LINKS[0]
    deleted = object_created(key)
    deleted["detail-type"] = "Object Deleted"
    restored = object_created(key)
    restored["detail-type"] = "Object Restore Completed"

    assert pattern_matches(pattern, object_created(key))
    assert pattern_matches(pattern, deleted)
    assert not pattern_matches(pattern, restored)
    assert not pattern_matches(pattern, object_created(key, bucket="other-bucket"))


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


def physical_name_prefix(logical_id: str) -> str:
    """How CloudFormation names an unnamed resource of the samples' stack."""
    return f"regseal-{logical_id}-"


def test_tuf_sqs_sample_is_what_the_seal_function_sends() -> None:
    (record,) = sample("sqs-tuf-targets-changed.json")["Records"]
    queue = queue_of(stack_for(DEMO), tuf_function(stack_for(DEMO)))
    queue_name = record["eventSourceARN"].rsplit(":", 1)[1]
    sample_seal = sample("sqs-eventbridge-tag-link.json")["Records"][0]

    assert record["body"] == TargetsChanged({"team-a": 2}).to_json()
    assert record["eventSource"] == "aws:sqs"
    assert queue_name.startswith(physical_name_prefix(queue.logical_id))
    assert (
        record["md5OfBody"]
        == hashlib.md5(record["body"].encode(), usedforsecurity=False).hexdigest()
    )
    assert record["attributes"]["SenderId"].endswith(
        ":" + physical_name_prefix("SealFunction") + "Q2ExampleFn"
    )
    assert set(record) == set(sample_seal)
    assert int(record["attributes"]["SentTimestamp"]) > int(
        sample_seal["attributes"]["SentTimestamp"]
    )


def test_scheduled_sample_comes_from_the_tuf_schedule_rule() -> None:
    event = sample("eventbridge-scheduled-tuf-refresh.json")
    rule = schedule_rule(stack_for(DEMO))
    (resource,) = event["resources"]
    prefix = "arn:aws:events:us-east-1:111122223333:rule/"

    assert event["source"] == "aws.events"
    assert event["detail-type"] == "Scheduled Event"
    assert event["detail"] == {}
    assert resource.startswith(prefix + physical_name_prefix(rule.logical_id))
    assert "Input" not in rule.properties["Targets"][0]


# -------------------------------------------------------- function settings

SEAL_ENV_BASE = {
    "REGSEAL_BUCKET": BUCKET,
    "REGSEAL_REGISTRY_ROOT": "/",
    "REGSEAL_STATE_PREFIX": "regseal/",
    "REGSEAL_MAX_RECEIVE_COUNT": "5",
    "REGSEAL_QUEUE_URL": Att("SealQueue", "Ref"),
    "REGSEAL_VERIFY_PLAINTEXT": "true",
    "REGSEAL_POLICY": f"s3://{BUCKET}/regseal/policy.json",
    "POWERTOOLS_SERVICE_NAME": "seal",
    "POWERTOOLS_METRICS_NAMESPACE": "regseal",
    "POWERTOOLS_LOGGER_LOG_EVENT": "false",
    "POWERTOOLS_TRACER_CAPTURE_RESPONSE": "false",
    "POWERTOOLS_LOG_LEVEL": "INFO",
    "LOG_LEVEL": "INFO",
}


def test_seal_environment_without_tuf_records_no_targets() -> None:
    env = variables(seal_function(stack_for(DEMO)))

    assert env == SEAL_ENV_BASE
    assert Settings.from_env(env).tuf_bucket is None


def test_seal_environment_with_tuf_names_the_metadata_and_the_queue() -> None:
    env = variables(seal_function(stack_for({**DEMO, "TufEnabled": "true"})))

    assert env == {
        **SEAL_ENV_BASE,
        "REGSEAL_TUF_BUCKET": BUCKET,
        "REGSEAL_TUF_PREFIX": "tuf/",
        "REGSEAL_TUF_QUEUE_URL": Att("TufQueue", "Ref"),
    }


def test_tuf_environment_for_the_demo_stack() -> None:
    env = variables(tuf_function(stack_for(DEMO)))

    assert env == {
        "REGSEAL_TUF_BUCKET": BUCKET,
        "REGSEAL_TUF_PREFIX": "tuf/",
        "REGSEAL_TUF_RESIGN_TEAMS": "false",
        "POWERTOOLS_SERVICE_NAME": "tuf",
        "POWERTOOLS_METRICS_NAMESPACE": "regseal",
        "POWERTOOLS_LOGGER_LOG_EVENT": "false",
        "POWERTOOLS_TRACER_CAPTURE_RESPONSE": "false",
        "POWERTOOLS_LOG_LEVEL": "INFO",
        "LOG_LEVEL": "INFO",
    }


def test_handler_environment_follows_the_parameters() -> None:
    stack = stack_for(IMPORTED)
    seal = variables(seal_function(stack))
    tuf = variables(tuf_function(stack))

    assert seal["REGSEAL_REGISTRY_ROOT"] == "/registry/prod"
    assert seal["REGSEAL_POLICY"] == "ssm:/regseal/policy"
    assert seal["REGSEAL_TUF_BUCKET"] == tuf["REGSEAL_TUF_BUCKET"] == "example-tuf"
    assert seal["REGSEAL_TUF_PREFIX"] == tuf["REGSEAL_TUF_PREFIX"] == "tuf/"


@pytest.mark.parametrize(("parameter", "verify"), [("true", True), ("false", False)])
def test_verify_plaintext_parameter_reaches_the_seal_settings(
    parameter: str, verify: bool
) -> None:
    stack = stack_for({**DEMO, "VerifyPlaintext": parameter})
    env = variables(seal_function(stack))

    assert env["REGSEAL_VERIFY_PLAINTEXT"] == parameter
    assert Settings.from_env(env).verify_plaintext is verify


QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/111122223333/regseal-TufQueue-Q3"


def deployed(env: dict[str, Any]) -> dict[str, str]:
    """The environment with the queue reference resolved as CloudFormation would."""
    resolved = {"<TufQueue.Ref>": QUEUE_URL}
    return {k: resolved.get(str(v), str(v)) for k, v in env.items()}


def test_the_code_reads_the_environment_the_template_sets() -> None:
    stack = stack_for(IMPORTED)
    seal = Settings.from_env(deployed(variables(seal_function(stack))))
    tuf = TufSettings.from_env(deployed(variables(tuf_function(stack))))

    assert (seal.bucket, seal.registry_root) == (BUCKET, "/registry/prod")
    assert seal.policy_location == "ssm:/regseal/policy"
    assert (seal.tuf_bucket, seal.tuf_prefix) == ("example-tuf", "tuf/")
    assert seal.tuf_queue_url == QUEUE_URL
    assert tuf.location == MetadataLocation("example-tuf", "tuf/")
    assert tuf.resign_teams is False
    assert tuf.snapshot_key is None
    assert tuf.timestamp_key is None


def test_every_regseal_variable_is_one_the_code_reads(stack: Stack) -> None:
    package = ROOT / "layers" / "regseal" / "regseal"
    read = set(
        re.findall(
            r'"(REGSEAL_[A-Z0-9_]+)"',
            "".join(f.read_text() for f in package.rglob("*.py")),
        )
    )
    for name in FUNCTIONS:
        names = {v for v in variables(stack.resources[name]) if v.startswith("REGSEAL")}

        assert names
        assert names <= read, names - read


@pytest.mark.parametrize("name", FUNCTIONS)
def test_functions_run_traced_on_python_312_with_the_layer(
    stack: Stack, name: str
) -> None:
    function = stack.resources[name]
    (layer_ref,) = function.properties["Layers"]
    layer = stack.target(layer_ref, "AWS::Lambda::LayerVersion")
    architecture = stack.parameters["Architecture"]

    assert function.properties["Runtime"] == "python3.12"
    assert function.properties["Handler"] == "app.handler"
    assert function.properties["TracingConfig"] == {"Mode": "Active"}
    assert function.properties["Architectures"] == [architecture]
    assert layer.properties["CompatibleArchitectures"] == [architecture]
    assert layer.properties["CompatibleRuntimes"] == ["python3.12"]


def test_functions_are_built_from_their_own_directories() -> None:
    source = load_template()["Resources"]

    assert source["SealFunction"]["Properties"]["CodeUri"] == "functions/seal/"
    assert source["TufFunction"]["Properties"]["CodeUri"] == "functions/tuf/"
    for name in ("seal", "tuf"):
        assert (ROOT / "functions" / name / "app.py").is_file()


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
    watched = {
        (
            a.properties["MetricName"],
            str(a.properties["Dimensions"][0]["Value"])
            if "Dimensions" in a.properties
            else None,
        )
        for a in stack.of_type("AWS::CloudWatch::Alarm")
    }
    expected = {
        ("TufRolesHeldBack", None),
        ("TufOfflineRolesExpiring", None),
        ("TufTeamRolesExpiring", None),
    }
    for name in FUNCTIONS:
        function = stack.resources[name]
        queue = queue_of(stack, function)
        dead_letter = queue.properties["RedrivePolicy"]["deadLetterTargetArn"]
        expected |= {
            (
                "ApproximateNumberOfMessagesVisible",
                f"<{dead_letter.logical_id}.QueueName>",
            ),
            ("Errors", str(Att(name, "Ref"))),
            ("Throttles", str(Att(name, "Ref"))),
        }
    expected.add(("ApproximateAgeOfOldestMessage", "<SealQueue.QueueName>"))

    assert watched == expected
    for alarm in stack.of_type("AWS::CloudWatch::Alarm"):
        assert alarm.properties.get("AlarmActions") == actions
        assert alarm.properties.get("OKActions") == actions


def test_tuf_log_alarms_count_the_messages_the_handler_logs() -> None:
    stack = stack_for(DEMO)
    app = (ROOT / "functions" / "tuf" / "app.py").read_text()
    filters = {
        f.properties["MetricTransformations"][0]["MetricName"]: f
        for f in stack.of_type("AWS::Logs::MetricFilter")
    }
    alarmed = {
        a.properties["MetricName"]
        for a in stack.of_type("AWS::CloudWatch::Alarm")
        if a.properties["Namespace"] == "regseal"
    }

    assert (
        set(filters)
        == alarmed
        == {"TufRolesHeldBack", "TufOfflineRolesExpiring", "TufTeamRolesExpiring"}
    )
    for metric_filter in filters.values():
        pattern = metric_filter.properties["FilterPattern"]
        matched = re.fullmatch(r'\{ \$\.message = "([^"]+)" \}', pattern)
        assert matched, pattern
        (message,) = matched.groups()

        assert metric_filter.properties["LogGroupName"] == Att(
            "TufFunctionLogGroup", "Ref"
        )
        assert f'"{message}"' in app


def test_tuf_throttles_alarm_only_on_sustained_throttling() -> None:
    alarm = stack_for(DEMO).resources["TufFunctionThrottlesAlarm"].properties

    assert alarm["EvaluationPeriods"] == alarm["DatapointsToAlarm"] == 3


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
        "MetadataLocation",
        "TufQueueUrl",
        "TufDeadLetterQueueUrl",
        "TufFunctionName",
        "TufFunctionRoleArn",
        "SnapshotKeyArn",
        "TimestampKeyArn",
        "TufInitCommand",
        "TufAddTeamCommand",
    }
    assert demo["TeamKeyArns"] == Att("DemoTeamKey", "Arn")
    assert demo["MetadataUrl"] == f"https://{BUCKET}.s3.us-east-1.amazonaws.com/tuf/"
    assert demo["MetadataLocation"] == f"s3://{BUCKET}/tuf/"
    assert demo["TufQueueUrl"] == Att("TufQueue", "Ref")
    assert demo["SnapshotKeyArn"] == Att("TufSnapshotKey", "Arn")
    assert demo["TimestampKeyArn"] == Att("TufTimestampKey", "Arn")
    assert imported["TeamKeyArns"] == IMPORTED["TeamKeyArns"]
    assert (
        imported["MetadataUrl"] == "https://example-tuf.s3.us-east-1.amazonaws.com/tuf/"
    )
    assert imported["MetadataLocation"] == "s3://example-tuf/tuf/"
    assert imported["SnapshotKeyArn"] == SNAPSHOT_ARN
    assert imported["TimestampKeyArn"] == TIMESTAMP_ARN


def parse_command(command: str) -> Any:
    words = shlex.split(command)
    assert words[0] == "regseal"
    return build_parser().parse_args(words[1:])


def test_init_command_output_is_a_valid_regseal_tuf_init() -> None:
    command = stack_for(IMPORTED).outputs["TufInitCommand"]
    args = parse_command(command)

    assert args.metadata == "s3://example-tuf/tuf/"
    assert args.snapshot_key == f"awskms:{SNAPSHOT_ARN}"
    assert args.timestamp_key == f"awskms:{TIMESTAMP_ARN}"
    assert args.root_key == ["ROOT_KEY"]
    assert args.targets_key == ["TARGETS_KEY"]
    assert str(args.out) == "root.json"
    assert MetadataLocation.parse(args.metadata) == MetadataLocation(
        "example-tuf", "tuf/"
    )


def test_add_team_command_output_names_the_demo_signing_key() -> None:
    demo = parse_command(stack_for(DEMO).outputs["TufAddTeamCommand"])
    imported = parse_command(stack_for(IMPORTED).outputs["TufAddTeamCommand"])

    assert demo.key == "awskms:<DemoTeamSigningKey.Arn>"
    assert demo.metadata == f"s3://{BUCKET}/tuf/"
    assert demo.repositories == ["TEAM/**"]
    assert imported.key == "awskms:TEAM_SIGNING_KEY_ARN"


def test_samconfig_example_sets_every_parameter_to_a_valid_value() -> None:
    config = tomllib.loads((ROOT / "infra" / "samconfig.example.toml").read_text())
    overrides = config["default"]["deploy"]["parameters"]["parameter_overrides"]
    values = dict(re.findall(r'(\w+)="([^"]*)"', overrides))

    assert set(values) == set(load_template()["Parameters"])
    stack = load_stack(values)
    assert stack.parameters["RegistryBucketName"] == values["RegistryBucketName"]
