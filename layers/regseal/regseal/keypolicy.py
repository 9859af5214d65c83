"""KMS key policies for team layer keys: exactly the grants regseal needs.

A team's layer key wraps the private options of every layer sealed for the
team, under the encryption context ``{"repository": …, "layer": …}``
(:mod:`regseal.kms`). Its key policy, rendered by :func:`render_key_policy`
from the team's entry in the sealing policy, grants:

- the seal function's role ``kms:Encrypt`` only, only with an encryption
  context of exactly the keys ``repository`` and ``layer``, a ``layer``
  present, and a ``repository`` ``StringLike`` one of the team's patterns;
- the team's runtime roles ``kms:Decrypt`` only, under the same context
  rules, so a node of team A cannot open team B's layers even if they were
  wrapped with A's key;
- the key administrators the administrative actions only: no cryptographic
  operation, no ``kms:CreateGrant`` (which would let them grant themselves
  use);
- nobody else anything. The policy has no statement for the account root, so
  IAM policies cannot widen it, and explicit denies keep Encrypt and Decrypt
  to the named roles and forbid ``ReEncrypt*``, ``GenerateDataKey*`` and
  ``CreateGrant`` to everyone, whatever other statements or grants say.

Principals are role ARNs: KMS checks that they exist when the policy is put,
and a role deleted and re-created under the same name must be put again.
Patterns keep the policy's meaning because both sides use ``StringLike``
semantics (``*`` spans "/").

Public API: :data:`ADMIN_ACTIONS`, :data:`CONTEXT_KEYS`,
:func:`render_key_policy`, :func:`template`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from regseal.errors import PolicyError
from regseal.policy import Team

ADMIN_ACTIONS = (
    "kms:CancelKeyDeletion",
    "kms:CreateAlias",
    "kms:DeleteAlias",
    "kms:DescribeKey",
    "kms:DisableKey",
    "kms:DisableKeyRotation",
    "kms:EnableKey",
    "kms:EnableKeyRotation",
    "kms:GetKeyPolicy",
    "kms:GetKeyRotationStatus",
    "kms:ListGrants",
    "kms:ListKeyPolicies",
    "kms:ListKeyRotations",
    "kms:ListResourceTags",
    "kms:PutKeyPolicy",
    "kms:RevokeGrant",
    "kms:RotateKeyOnDemand",
    "kms:ScheduleKeyDeletion",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:UpdateAlias",
    "kms:UpdateKeyDescription",
)
"""What key administrators may do: manage, rotate, tag, delete; never use."""

CONTEXT_KEYS = ("repository", "layer")
FORBIDDEN_ACTIONS = ("kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:CreateGrant")
_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]+")
_ADMIN_ARN = re.compile(r"arn:aws[a-z-]*:iam::[0-9]{12}:(role|user)/[\w+=,.@/-]+")


def _check(arns: Sequence[str], pattern: re.Pattern[str], what: str) -> list[str]:
    for arn in arns:
        if not pattern.fullmatch(arn):
            raise PolicyError(f"{what}: expected an IAM ARN, got {arn!r}")
    return list(arns)


def _context_conditions(patterns: Sequence[str]) -> dict[str, Any]:
    return {
        "ForAllValues:StringEquals": {"kms:EncryptionContextKeys": list(CONTEXT_KEYS)},
        "StringLike": {"kms:EncryptionContext:repository": list(patterns)},
        "Null": {"kms:EncryptionContext:layer": "false"},
    }


def render_key_policy(
    team: Team,
    *,
    seal_role: str,
    runtime_roles: Sequence[str],
    administrators: Sequence[str],
) -> dict[str, Any]:
    """The key policy of ``team``'s layer key.

    Args:
        team: The team, from the sealing policy (its repository patterns).
        seal_role: The seal function's role ARN.
        runtime_roles: Role ARNs of the team's runtimes (node roles, IRSA
            roles) that pull and decrypt.
        administrators: Role or user ARNs that administer the key.

    Raises:
        PolicyError: An ARN is malformed, a list is empty, or the seal role
            is also a runtime role (sealing never unwraps).
    """
    seal = _check([seal_role], _ROLE_ARN, "seal role")[0]
    runtimes = _check(runtime_roles, _ROLE_ARN, f"team {team.name} runtime role")
    admins = _check(administrators, _ADMIN_ARN, "key administrator")
    if not runtimes:
        raise PolicyError(f"team {team.name}: expected at least one runtime role")
    if not admins:
        raise PolicyError("expected at least one key administrator")
    if seal in runtimes:
        raise PolicyError(
            f"team {team.name}: the seal role {seal} must not be a runtime role; "
            "sealing never unwraps"
        )
    patterns = list(team.repositories)
    return {
        "Version": "2012-10-17",
        "Id": f"regseal-layer-key-{team.name}",
        "Statement": [
            {
                "Sid": "KeyAdministrationWithoutUse",
                "Effect": "Allow",
                "Principal": {"AWS": admins},
                "Action": list(ADMIN_ACTIONS),
                "Resource": "*",
            },
            {
                "Sid": "SealFunctionWrapsTeamLayerKeys",
                "Effect": "Allow",
                "Principal": {"AWS": seal},
                "Action": "kms:Encrypt",
                "Resource": "*",
                "Condition": _context_conditions(patterns),
            },
            {
                "Sid": "TeamRuntimesUnwrapTeamLayerKeys",
                "Effect": "Allow",
                "Principal": {"AWS": runtimes},
                "Action": "kms:Decrypt",
                "Resource": "*",
                "Condition": _context_conditions(patterns),
            },
            {
                "Sid": "OnlyTheSealFunctionEncrypts",
                "Effect": "Deny",
                "Principal": {"AWS": "*"},
                "Action": "kms:Encrypt",
                "Resource": "*",
                "Condition": {"ArnNotEquals": {"aws:PrincipalArn": seal}},
            },
            {
                "Sid": "OnlyTeamRuntimesDecrypt",
                "Effect": "Deny",
                "Principal": {"AWS": "*"},
                "Action": "kms:Decrypt",
                "Resource": "*",
                "Condition": {"ArnNotEquals": {"aws:PrincipalArn": runtimes}},
            },
            {
                "Sid": "NoReEncryptDataKeysOrGrants",
                "Effect": "Deny",
                "Principal": {"AWS": "*"},
                "Action": list(FORBIDDEN_ACTIONS),
                "Resource": "*",
            },
        ],
    }


def template() -> dict[str, Any]:
    """The key policy with CloudFormation-style placeholders, for infra/.

    ``${TeamRepositoryPattern}`` stands for the team's pattern list; a team
    with several patterns gets several strings there.
    """
    team = Team(
        name="TEAM",
        repositories=("${TeamRepositoryPattern}",),
        kms_key="alias/TEAM",
        recipients=(),
    )
    policy = render_key_policy(
        team,
        seal_role="arn:aws:iam::111111111111:role/SEAL",
        runtime_roles=["arn:aws:iam::111111111111:role/RUNTIME"],
        administrators=["arn:aws:iam::111111111111:role/ADMIN"],
    )
    replacements = {
        "arn:aws:iam::111111111111:role/SEAL": "${SealFunctionRoleArn}",
        "arn:aws:iam::111111111111:role/RUNTIME": "${TeamRuntimeRoleArn}",
        "arn:aws:iam::111111111111:role/ADMIN": "${KeyAdministratorArn}",
        "regseal-layer-key-TEAM": "regseal-layer-key-${TeamName}",
    }
    return _replace(policy, replacements)  # type: ignore[return-value]


def _replace(value: object, replacements: dict[str, str]) -> object:
    if isinstance(value, str):
        return replacements.get(value, value)
    if isinstance(value, list):
        return [_replace(item, replacements) for item in value]
    if isinstance(value, dict):
        return {key: _replace(item, replacements) for key, item in value.items()}
    return value
