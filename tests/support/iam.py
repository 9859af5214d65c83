"""A small evaluator of KMS key policies, to test the ones regseal renders.

It follows AWS's evaluation logic for one resource-based policy (the key
policy alone, which is all regseal's key policies rely on: they name
principals directly and have no account-root statement):

- an explicit ``Deny`` wins, else an ``Allow`` is needed, else the request is
  implicitly denied;
- ``Principal``: ``"*"``, ``{"AWS": "*"}`` or ``{"AWS": ARN | [ARN, …]}``;
  an account root ARN matches every principal of that account;
- ``Action``: strings or lists with ``*`` and ``?``, case-insensitive;
- ``Resource``: only ``"*"`` (a key policy's resource is the key);
- ``Condition``: ``StringEquals``, ``StringNotEquals``, ``StringLike``,
  ``StringNotLike``, ``ArnEquals``, ``ArnNotEquals``, ``ArnLike``,
  ``ArnNotLike`` and ``Null``, optionally qualified by ``ForAllValues:`` or
  ``ForAnyValue:``. Operators are ANDed, keys within an operator ANDed,
  values of a key ORed. A key missing from the request makes positive
  operators false and negated ones true; ``ForAllValues`` over a missing key
  is true, ``ForAnyValue`` false; ``Null: "true"`` holds when the key is
  missing.

Anything else (``NotAction``, ``NotPrincipal``, another operator, a
multi-valued key without a set qualifier) raises ``Unsupported``, so a
template that uses it fails its test instead of being judged wrongly.
"""

from __future__ import annotations

import enum
import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


class Unsupported(Exception):
    """The policy uses an element this evaluator does not model."""


class Decision(enum.Enum):
    ALLOW = "allow"
    EXPLICIT_DENY = "explicit deny"
    IMPLICIT_DENY = "implicit deny"


@dataclass(frozen=True)
class Request:
    """One KMS request: who, what, and its condition keys."""

    principal: str | None
    action: str
    context: Mapping[str, str | tuple[str, ...]] = field(default_factory=dict)


MULTI_VALUED = frozenset({"kms:encryptioncontextkeys"})


def kms_request(
    principal: str | None, action: str, encryption_context: Mapping[str, str] | None
) -> Request:
    """A request with the keys KMS sets: principal ARN and encryption context."""
    context: dict[str, str | tuple[str, ...]] = {}
    if principal is not None:
        context["aws:PrincipalArn"] = principal
    if encryption_context:
        context["kms:EncryptionContextKeys"] = tuple(encryption_context)
        for key, value in encryption_context.items():
            context[f"kms:EncryptionContext:{key}"] = value
    return Request(principal, action, context)


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _glob(pattern: str, value: str, *, case: bool) -> bool:
    if case:
        return fnmatch.fnmatchcase(value, pattern)
    return fnmatch.fnmatchcase(value.lower(), pattern.lower())


def _principal_matches(principal: Any, who: str | None) -> bool:
    if principal == "*":
        return True
    if not isinstance(principal, dict) or set(principal) != {"AWS"}:
        raise Unsupported(f"Principal {principal!r}")
    for arn in _as_list(principal["AWS"]):
        if arn == "*":
            return True
        if who is None:
            continue
        if arn == who:
            return True
        root = re.fullmatch(r"arn:(aws[a-z-]*):iam::(\d{12}):root", arn)
        if root and re.match(rf"arn:{root.group(1)}:(iam|sts)::{root.group(2)}:", who):
            return True
    return False


def _match_value(operator: str, policy_value: str, value: str) -> bool:
    if operator in {"StringEquals", "ArnEquals"}:
        return value == policy_value
    if operator in {"StringLike", "ArnLike"}:
        return _glob(policy_value, value, case=True)
    raise Unsupported(f"condition operator {operator!r}")


_NEGATED = {
    "StringNotEquals": "StringEquals",
    "StringNotLike": "StringLike",
    "ArnNotEquals": "ArnEquals",
    "ArnNotLike": "ArnLike",
}


def _key_holds(
    qualifier: str, operator: str, key: str, expected: Any, request: Request
) -> bool:
    present = {k.lower(): v for k, v in request.context.items()}
    actual = present.get(key.lower())
    expected_values = [str(v) for v in _as_list(expected)]
    if operator == "Null":
        if qualifier or len(expected_values) != 1:
            raise Unsupported("qualified or multi-valued Null")
        return (actual is None) == (expected_values[0] == "true")
    negated = operator in _NEGATED
    base = _NEGATED.get(operator, operator)
    multi = key.lower() in MULTI_VALUED
    if multi and not qualifier:
        raise Unsupported(f"multi-valued key {key} without ForAllValues/ForAnyValue")
    if qualifier and not multi:
        raise Unsupported(f"{qualifier} on single-valued key {key}")

    def one(value: str) -> bool:
        hit = any(_match_value(base, e, value) for e in expected_values)
        return not hit if negated else hit

    if qualifier == "ForAllValues":
        values = _as_list(actual) if actual is not None else []
        return all(one(v) for v in values)
    if qualifier == "ForAnyValue":
        values = _as_list(actual) if actual is not None else []
        return any(one(v) for v in values)
    if actual is None:
        return negated
    return one(str(actual))


def _conditions_hold(conditions: Mapping[str, Any], request: Request) -> bool:
    for name, block in conditions.items():
        qualifier, _, operator = name.rpartition(":")
        if qualifier not in {"", "ForAllValues", "ForAnyValue"}:
            raise Unsupported(f"condition qualifier {qualifier!r}")
        if not isinstance(block, dict):
            raise Unsupported(f"condition block {name!r}")
        for key, expected in block.items():
            if not _key_holds(qualifier, operator, key, expected, request):
                return False
    return True


def _statement_applies(statement: Mapping[str, Any], request: Request) -> bool:
    unknown = set(statement) - {
        "Sid",
        "Effect",
        "Principal",
        "Action",
        "Resource",
        "Condition",
    }
    if unknown:
        raise Unsupported(f"statement elements {sorted(unknown)}")
    if statement.get("Resource") != "*":
        raise Unsupported(f"Resource {statement.get('Resource')!r}")
    if not _principal_matches(statement.get("Principal"), request.principal):
        return False
    if not any(
        _glob(pattern, request.action, case=False)
        for pattern in _as_list(statement.get("Action"))
    ):
        return False
    return _conditions_hold(statement.get("Condition", {}), request)


def evaluate(policy: Mapping[str, Any], request: Request) -> Decision:
    """The decision of ``policy`` alone on ``request``."""
    if policy.get("Version") != "2012-10-17":
        raise Unsupported(f"policy Version {policy.get('Version')!r}")
    allowed = False
    for statement in policy["Statement"]:
        effect = statement.get("Effect")
        if effect not in {"Allow", "Deny"}:
            raise Unsupported(f"Effect {effect!r}")
        if _statement_applies(statement, request):
            if effect == "Deny":
                return Decision.EXPLICIT_DENY
            allowed = True
    return Decision.ALLOW if allowed else Decision.IMPLICIT_DENY


def allowed(policy: Mapping[str, Any], request: Request) -> bool:
    return evaluate(policy, request) is Decision.ALLOW


def grants(
    policy: Mapping[str, Any],
    principals: Sequence[str | None],
    actions: Sequence[str],
    contexts: Sequence[Mapping[str, str] | None],
) -> set[tuple[str | None, str, int]]:
    """Every (principal, action, context index) the policy allows."""
    return {
        (principal, action, index)
        for principal in principals
        for action in actions
        for index, context in enumerate(contexts)
        if allowed(policy, kms_request(principal, action, context))
    }
