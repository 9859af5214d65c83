"""The rendered key policies grant exactly what issue 3 asks, and nothing else.

A matrix of principals x actions x encryption contexts is evaluated with the
small evaluator of tests/support/iam.py and compared with the intended grants,
restated here independently of the renderer:

- the seal role may Encrypt, only with a context of exactly repository and
  layer whose repository matches one of the team's patterns;
- the team's runtime roles may Decrypt under the same context rule;
- the key administrators may run the administrative actions, any context;
- everything else is denied.
"""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path

import pytest

from regseal.cli import main
from regseal.errors import PolicyError
from regseal.keypolicy import ADMIN_ACTIONS, render_key_policy, template
from regseal.policy import Team
from tests.support.iam import (
    Decision,
    Unsupported,
    evaluate,
    grants,
    kms_request,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "infra" / "key-policies"
ACCOUNT = "111122223333"
SEAL = f"arn:aws:iam::{ACCOUNT}:role/regseal-seal"
RUNTIME_A = (
    f"arn:aws:iam::{ACCOUNT}:role/eks-team-a-nodes",
    "arn:aws:iam::444455556666:role/team-a-ci-pull",
)
RUNTIME_B = f"arn:aws:iam::{ACCOUNT}:role/eks-team-b-nodes"
ADMIN = f"arn:aws:iam::{ACCOUNT}:role/kms-admins"
OTHER = f"arn:aws:iam::{ACCOUNT}:role/developer"
ROOT_ARN = f"arn:aws:iam::{ACCOUNT}:root"
PRINCIPALS = [SEAL, *RUNTIME_A, RUNTIME_B, ADMIN, OTHER, ROOT_ARN, None]

TEAM_A = Team(
    name="team-a",
    repositories=("team-a/*", "shared/team-a-*"),
    kms_key="alias/regseal-team-a",
    recipients=(),
)
LAYER = "sha256:" + "ab" * 32
CONTEXTS = [
    {"repository": "team-a/app", "layer": LAYER},
    {"repository": "team-a/tools/cli", "layer": LAYER},
    {"repository": "shared/team-a-base", "layer": LAYER},
    {"layer": LAYER, "repository": "team-a/app"},
    {"repository": "team-b/app", "layer": LAYER},
    {"repository": "team-a", "layer": LAYER},
    {"repository": "team-ab/app", "layer": LAYER},
    {"repository": "shared/team-b-base", "layer": LAYER},
    {"repository": "other/team-a/app", "layer": LAYER},
    {"repository": "team-a/app"},
    {"layer": LAYER},
    {"repository": "team-a/app", "layer": LAYER, "purpose": "test"},
    None,
]
ACTIONS = [
    "kms:Encrypt",
    "kms:Decrypt",
    "kms:ReEncryptFrom",
    "kms:ReEncryptTo",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:CreateGrant",
    "kms:PutKeyPolicy",
    "kms:DescribeKey",
    "kms:ScheduleKeyDeletion",
    "kms:DisableKey",
    "kms:GetKeyPolicy",
    "kms:Sign",
]


def intended(principal, action, context) -> bool:
    """Issue 3's grants, stated without looking at the renderer."""
    if principal == ADMIN and action in ADMIN_ACTIONS:
        return True
    exact = (
        context is not None
        and set(context) == {"repository", "layer"}
        and any(
            fnmatch.fnmatchcase(context["repository"], p) for p in TEAM_A.repositories
        )
    )
    if principal == SEAL and action == "kms:Encrypt":
        return exact
    if principal in RUNTIME_A and action == "kms:Decrypt":
        return exact
    return False


def team_a_policy() -> dict:
    return render_key_policy(
        TEAM_A, seal_role=SEAL, runtime_roles=list(RUNTIME_A), administrators=[ADMIN]
    )


def test_key_policy_grants_exactly_the_intended_matrix():
    policy = team_a_policy()

    expected = {
        (principal, action, index)
        for principal in PRINCIPALS
        for action in ACTIONS
        for index, context in enumerate(CONTEXTS)
        if intended(principal, action, context)
    }

    assert grants(policy, PRINCIPALS, ACTIONS, CONTEXTS) == expected
    # The matrix really exercises each grant.
    assert (SEAL, "kms:Encrypt", 0) in expected
    assert (RUNTIME_A[1], "kms:Decrypt", 2) in expected
    assert (ADMIN, "kms:ScheduleKeyDeletion", 12) in expected
    assert len(expected) == 4 * 3 + len(set(ADMIN_ACTIONS) & set(ACTIONS)) * len(
        CONTEXTS
    )


@pytest.mark.parametrize(
    ("principal", "action"),
    [
        (SEAL, "kms:Decrypt"),
        (ADMIN, "kms:Decrypt"),
        (ADMIN, "kms:Encrypt"),
        (RUNTIME_A[0], "kms:Encrypt"),
        (RUNTIME_B, "kms:Decrypt"),
        (ROOT_ARN, "kms:Decrypt"),
        (None, "kms:Decrypt"),
        (ADMIN, "kms:CreateGrant"),
        (RUNTIME_A[0], "kms:ReEncryptFrom"),
    ],
)
def test_use_outside_the_grants_is_denied_explicitly(principal, action):
    # Explicit, so that no IAM policy or grant can turn it into an allow.
    request = kms_request(principal, action, CONTEXTS[0])

    assert evaluate(team_a_policy(), request) is Decision.EXPLICIT_DENY


def test_a_careless_extra_allow_statement_cannot_widen_key_use():
    policy = team_a_policy()
    policy["Statement"].append(
        {
            "Effect": "Allow",
            "Principal": {"AWS": "*"},
            "Action": "kms:*",
            "Resource": "*",
        }
    )
    crypto = [a for a in ACTIONS if a not in ADMIN_ACTIONS and a != "kms:Sign"]

    allowed = grants(policy, PRINCIPALS, crypto, CONTEXTS)

    # Such a statement loosens the context rule for the named roles, but the
    # explicit denies keep Encrypt and Decrypt with them and every other
    # cryptographic operation from everyone.
    assert {(p, a) for p, a, _ in allowed} == {
        (SEAL, "kms:Encrypt"),
        *((role, "kms:Decrypt") for role in RUNTIME_A),
    }


def test_team_b_runtime_decrypts_team_b_layers_with_its_own_key_only():
    team_b = Team("team-b", ("team-b/*",), "alias/regseal-team-b", ())
    policy_b = render_key_policy(
        team_b, seal_role=SEAL, runtime_roles=[RUNTIME_B], administrators=[ADMIN]
    )
    b_layer = {"repository": "team-b/app", "layer": LAYER}
    a_layer = {"repository": "team-a/app", "layer": LAYER}

    assert evaluate(policy_b, kms_request(RUNTIME_B, "kms:Decrypt", b_layer)) is (
        Decision.ALLOW
    )
    assert evaluate(policy_b, kms_request(RUNTIME_A[0], "kms:Decrypt", b_layer)) is (
        Decision.EXPLICIT_DENY
    )
    assert evaluate(
        team_a_policy(), kms_request(RUNTIME_B, "kms:Decrypt", a_layer)
    ) is (Decision.EXPLICIT_DENY)
    # Even a team-a layer wrapped with team-b's key by mistake stays closed.
    assert evaluate(policy_b, kms_request(RUNTIME_B, "kms:Decrypt", a_layer)) is (
        Decision.IMPLICIT_DENY
    )


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"seal_role": "regseal-seal"}, "seal role: expected an IAM ARN"),
        ({"runtime_roles": []}, "expected at least one runtime role"),
        ({"administrators": []}, "expected at least one key administrator"),
        ({"runtime_roles": [SEAL]}, "must not be a runtime role"),
        (
            {"administrators": [f"arn:aws:iam::{ACCOUNT}:group/admins"]},
            "key administrator: expected an IAM ARN",
        ),
    ],
)
def test_render_refuses_bad_principals(kwargs, needle):
    arguments = {
        "seal_role": SEAL,
        "runtime_roles": list(RUNTIME_A),
        "administrators": [ADMIN],
        **kwargs,
    }

    with pytest.raises(PolicyError, match=needle):
        render_key_policy(TEAM_A, **arguments)


# --------------------------------------------------------------------------
# The evaluator itself, on cases whose AWS answer is documented


def test_evaluator_treats_for_all_values_over_no_context_as_true():
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": OTHER},
                "Action": "kms:Encrypt",
                "Resource": "*",
                "Condition": {
                    "ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["a"]}
                },
            }
        ],
    }

    # This is why the templates also require the keys to be present.
    assert evaluate(policy, kms_request(OTHER, "kms:Encrypt", None)) is Decision.ALLOW
    assert evaluate(policy, kms_request(OTHER, "kms:Encrypt", {"b": "1"})) is (
        Decision.IMPLICIT_DENY
    )


def test_evaluator_negated_operators_hold_for_a_missing_key():
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "kms:*",
                "Resource": "*",
                "Condition": {"ArnNotEquals": {"aws:PrincipalArn": [SEAL, ADMIN]}},
            },
            {"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*"},
        ],
    }

    assert evaluate(policy, kms_request(None, "kms:Decrypt", None)) is (
        Decision.EXPLICIT_DENY
    )
    assert evaluate(policy, kms_request(ADMIN, "KMS:decrypt", None)) is Decision.ALLOW
    assert evaluate(policy, kms_request(OTHER, "kms:Decrypt", None)) is (
        Decision.EXPLICIT_DENY
    )


def test_evaluator_refuses_elements_it_does_not_model():
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": "*", "NotAction": "kms:*", "Resource": "*"}
        ],
    }

    with pytest.raises(Unsupported):
        evaluate(policy, kms_request(OTHER, "kms:Decrypt", None))


# --------------------------------------------------------------------------
# The files in infra/key-policies


def test_template_file_is_the_rendered_template():
    shipped = json.loads((EXAMPLES / "team-layer-key.template.json").read_text())

    assert shipped == template()
    assert "${SealFunctionRoleArn}" in json.dumps(shipped)


@pytest.mark.parametrize("team", ["team-a", "team-b"])
def test_worked_example_files_are_what_the_cli_renders(team, capsys):
    example = EXAMPLES / "examples"
    arguments = json.loads((example / f"{team}.args.json").read_text())

    status = main(
        [
            "policy",
            "key-policy",
            team,
            "--file",
            str(example / "policy.json"),
            *arguments,
        ]
    )

    assert status == 0
    rendered = json.loads(capsys.readouterr().out)
    assert rendered == json.loads((example / f"{team}.key-policy.json").read_text())


def test_worked_example_keeps_each_team_to_its_repositories():
    example = EXAMPLES / "examples"
    policies = {
        team: json.loads((example / f"{team}.key-policy.json").read_text())
        for team in ("team-a", "team-b")
    }
    runtimes = {
        team: json.loads((example / f"{team}.args.json").read_text())
        for team in ("team-a", "team-b")
    }

    def runtime(team):
        args = runtimes[team]
        return args[args.index("--runtime-role") + 1]

    for team, policy in policies.items():
        for other in ("team-a", "team-b"):
            context = {"repository": f"{other}/web", "layer": LAYER}
            for who in ("team-a", "team-b"):
                decision = evaluate(
                    policy, kms_request(runtime(who), "kms:Decrypt", context)
                )
                assert (decision is Decision.ALLOW) == (team == other == who)
