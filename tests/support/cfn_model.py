"""An offline model of regseal's stack, for tests that read the template.

``load_stack`` runs the SAM transform locally (aws-sam-translator, no AWS call)
and then evaluates the CloudFormation intrinsic functions the template uses for
one set of parameter values, the way CloudFormation would at deploy time:
conditions decide which resources exist and which ``Fn::If`` branch is taken,
``Ref``/``Fn::Sub``/``Fn::Select``/``Fn::Split``/``Fn::Join`` become strings.
References to resources stay symbolic (:class:`Att`), so a test can follow them
to the resource they name.

Two small evaluators sit next to it, each for the subset regseal relies on:
EventBridge event patterns (equality, prefix, suffix, wildcard, exists) and
IAM resource globs (``*`` and ``?``). Anything outside the subset raises, so a
template that starts using more cannot pass by accident.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator
from samtranslator.yaml_helper import yaml_parse

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"

PSEUDO_PARAMETERS = {
    "AWS::AccountId": "111122223333",
    "AWS::Region": "us-east-1",
    "AWS::Partition": "aws",
    "AWS::StackName": "regseal-test",
    "AWS::URLSuffix": "amazonaws.com",
}


class _NoValue:
    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()


@dataclass(frozen=True)
class Att:
    """A resource reference: ``Ref`` (attribute "Ref") or ``Fn::GetAtt``."""

    logical_id: str
    attribute: str

    def __str__(self) -> str:
        return f"<{self.logical_id}.{self.attribute}>"


@dataclass(frozen=True)
class Resource:
    logical_id: str
    type: str
    properties: Mapping[str, Any]
    depends_on: tuple[str, ...]


@dataclass(frozen=True)
class Stack:
    """The resources and outputs that one parameter set deploys."""

    parameters: Mapping[str, Any]
    resources: Mapping[str, Resource]
    outputs: Mapping[str, Any]

    def of_type(self, resource_type: str) -> list[Resource]:
        return [r for r in self.resources.values() if r.type == resource_type]

    def target(self, ref: Any, resource_type: str) -> Resource:
        """The resource ``ref`` points at, which must be of ``resource_type``."""
        assert isinstance(ref, Att), f"expected a resource reference, got {ref!r}"
        resource = self.resources[ref.logical_id]
        assert resource.type == resource_type, (
            f"{ref} is a {resource.type}, expected {resource_type}"
        )
        return resource


@dataclass(frozen=True)
class Statement:
    """One IAM policy statement and the roles it is attached to."""

    owner: str
    roles: tuple[str, ...]
    effect: str
    actions: tuple[str, ...]
    resources: tuple[Any, ...]
    condition: Mapping[str, Any]


def sam_transform(template: dict[str, Any]) -> dict[str, Any]:
    """The CloudFormation template SAM would deploy, computed offline."""
    template = copy.deepcopy(template)
    # sam package replaces local code paths with S3 locations before the
    # transform runs; do the same with placeholders.
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = f"s3://artifacts/{logical_id}.zip"
        if resource["Type"] == "AWS::Serverless::LayerVersion":
            resource["Properties"]["ContentUri"] = f"s3://artifacts/{logical_id}.zip"
    session = boto3.session.Session(
        region_name=PSEUDO_PARAMETERS["AWS::Region"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    translator = Translator(None, Parser(), boto_session=session)
    result: dict[str, Any] = translator.translate(
        template, parameter_values={}, get_managed_policy_map=dict
    )
    return result


def load_template() -> dict[str, Any]:
    parsed: dict[str, Any] = yaml_parse(TEMPLATE.read_text())
    return parsed


def load_stack(overrides: Mapping[str, str]) -> Stack:
    """Transform the template and evaluate it for ``overrides``."""
    source = load_template()
    transformed = sam_transform(source)
    parameters = _parameter_values(transformed["Parameters"], overrides)
    evaluator = _Evaluator(transformed, parameters)

    resources: dict[str, Resource] = {}
    for logical_id, raw in transformed["Resources"].items():
        if "Condition" in raw and not evaluator.condition(raw["Condition"]):
            continue
        depends_on = raw.get("DependsOn", ())
        if isinstance(depends_on, str):
            depends_on = (depends_on,)
        resources[logical_id] = Resource(
            logical_id=logical_id,
            type=raw["Type"],
            properties=evaluator.resolve(raw.get("Properties", {})),
            depends_on=tuple(depends_on),
        )
    outputs = {
        name: evaluator.resolve(output["Value"])
        for name, output in transformed.get("Outputs", {}).items()
        if "Condition" not in output or evaluator.condition(output["Condition"])
    }
    return Stack(parameters=parameters, resources=resources, outputs=outputs)


def iam_statements(stack: Stack) -> Iterator[Statement]:
    """Every statement of every identity policy in the stack."""
    for resource in stack.of_type("AWS::IAM::Role"):
        for policy in resource.properties.get("Policies", []):
            yield from _statements(
                f"{resource.logical_id}/{policy['PolicyName']}",
                (resource.logical_id,),
                policy["PolicyDocument"],
            )
    for policy_type in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        for resource in stack.of_type(policy_type):
            roles = tuple(
                ref.logical_id
                for ref in resource.properties.get("Roles", [])
                if isinstance(ref, Att)
            )
            yield from _statements(
                resource.logical_id, roles, resource.properties["PolicyDocument"]
            )


def _statements(
    owner: str, roles: tuple[str, ...], document: Mapping[str, Any]
) -> Iterator[Statement]:
    for raw in document["Statement"]:
        actions = raw["Action"]
        resources = raw.get("Resource", [])
        yield Statement(
            owner=owner,
            roles=roles,
            effect=raw["Effect"],
            actions=tuple([actions] if isinstance(actions, str) else actions),
            resources=tuple(resources if isinstance(resources, list) else [resources]),
            condition=raw.get("Condition", {}),
        )


def iam_glob_matches(pattern: str, value: str) -> bool:
    """IAM's matching of ARNs and actions: ``*`` any run, ``?`` one character."""
    regex = "".join(
        ".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern
    )
    return re.fullmatch(regex, value, flags=re.DOTALL) is not None


def allowed(
    stack: Stack,
    role: str,
    action: str,
    arn: str,
    context: Mapping[str, str] | None = None,
) -> bool:
    """Whether ``role``'s identity policies allow ``action`` on ``arn``.

    ``context`` holds the request's condition keys (``{"s3:prefix": "tuf/"}``).
    A statement applies only if its condition holds for them; a key the request
    does not carry fails the condition, as in IAM. An explicit deny wins over
    any allow.
    """
    verdict = False
    for statement in iam_statements(stack):
        if role not in statement.roles:
            continue
        if not any(iam_glob_matches(a, action) for a in statement.actions):
            continue
        if not any(
            isinstance(r, str) and iam_glob_matches(r, arn) for r in statement.resources
        ):
            continue
        if not condition_holds(statement.condition, context or {}):
            continue
        if statement.effect == "Deny":
            return False
        verdict = True
    return verdict


def condition_holds(condition: Mapping[str, Any], context: Mapping[str, str]) -> bool:
    """IAM condition evaluation for the single-valued operators regseal uses.

    Every operator block must hold (AND); within a block every key must hold
    (AND), a list of values matches if any does (OR). Other operators raise.
    """
    for operator, tests in condition.items():
        for key, expected in tests.items():
            values = expected if isinstance(expected, list) else [expected]
            if key not in context:
                return False
            actual = context[key]
            if operator in ("StringEquals", "ArnEquals"):
                matched = actual in values
            elif operator in ("StringLike", "ArnLike"):
                matched = any(iam_glob_matches(v, actual) for v in values)
            else:
                raise ValueError(f"condition operator {operator} is not evaluated")
            if not matched:
                return False
    return True


# ---------------------------------------------------------------- EventBridge


def pattern_matches(pattern: Mapping[str, Any], event: Any) -> bool:
    """Whether an EventBridge event pattern matches an event.

    Follows EventBridge's rules for the subset used: every field named in the
    pattern must match (AND), a list of matchers matches if any does (OR), and
    an array value in the event matches if any of its elements does.
    """
    for name, expected in pattern.items():
        present = isinstance(event, Mapping) and name in event
        value = event[name] if present else None
        if isinstance(expected, Mapping):
            if not present or not pattern_matches(expected, value):
                return False
            continue
        if not isinstance(expected, list):
            raise ValueError(f"pattern field {name!r} must be an object or a list")
        if not any(_leaf_matches(m, present, value) for m in expected):
            return False
    return True


def _leaf_matches(matcher: Any, present: bool, value: Any) -> bool:
    if isinstance(matcher, Mapping):
        if set(matcher) == {"exists"}:
            return present is bool(matcher["exists"])
        if not present:
            return False
        values = value if isinstance(value, list) else [value]
        return any(_operator_matches(matcher, v) for v in values)
    if not present:
        return False
    values = value if isinstance(value, list) else [value]
    return matcher in values


def _operator_matches(matcher: Mapping[str, Any], value: Any) -> bool:
    if len(matcher) != 1:
        raise ValueError(f"expected one operator per matcher, got {dict(matcher)!r}")
    ((operator, operand),) = matcher.items()
    if not isinstance(operand, str):
        raise ValueError(f"{operator} needs a string operand, got {operand!r}")
    if not isinstance(value, str):
        return False
    if operator == "prefix":
        return value.startswith(operand)
    if operator == "suffix":
        return value.endswith(operand)
    if operator == "wildcard":
        return wildcard_regex(operand).fullmatch(value) is not None
    raise ValueError(f"operator {operator!r} is outside the evaluated subset")


def wildcard_regex(wildcard: str) -> re.Pattern[str]:
    """The regex for an EventBridge wildcard, enforcing its validation rules.

    ``*`` matches any run of characters (``/`` included); ``\\*`` is a literal
    star and ``\\\\`` a literal backslash; ``**`` and other escapes are invalid.
    """
    if "**" in wildcard:
        raise ValueError(f"consecutive wildcard characters in {wildcard!r}")
    parts: list[str] = []
    chars = iter(wildcard)
    for c in chars:
        if c == "\\":
            escaped = next(chars, "")
            if escaped not in ("*", "\\"):
                raise ValueError(f"invalid escape in wildcard {wildcard!r}")
            parts.append(re.escape(escaped))
        elif c == "*":
            parts.append(".*")
        else:
            parts.append(re.escape(c))
    return re.compile("".join(parts), flags=re.DOTALL)


# ------------------------------------------------------- intrinsic functions


def _parameter_values(
    declared: Mapping[str, Any], overrides: Mapping[str, str]
) -> dict[str, Any]:
    unknown = set(overrides) - set(declared)
    if unknown:
        raise KeyError(f"not parameters of the template: {sorted(unknown)}")
    values: dict[str, Any] = dict(PSEUDO_PARAMETERS)
    for name, spec in declared.items():
        if name in overrides:
            raw = overrides[name]
        elif "Default" in spec:
            raw = str(spec["Default"])
        else:
            raise KeyError(f"parameter {name} has no default and no value")
        pattern = spec.get("AllowedPattern")
        items = raw.split(",") if spec["Type"] == "CommaDelimitedList" else [raw]
        for item in items:
            if pattern and not (item == "" and spec.get("Default") == ""):
                assert re.fullmatch(pattern, item), f"{name}={item!r} breaks {pattern}"
            if "AllowedValues" in spec:
                allowed_values = [str(v) for v in spec["AllowedValues"]]
                assert item in allowed_values, f"{name}={item!r} not allowed"
        values[name] = items if spec["Type"] == "CommaDelimitedList" else raw
    return values


class _Evaluator:
    def __init__(self, template: Mapping[str, Any], parameters: Mapping[str, Any]):
        self._conditions = template.get("Conditions", {})
        self._resources = template["Resources"]
        self._parameters = parameters
        self._memo: dict[str, bool] = {}

    def condition(self, name: str) -> bool:
        if name not in self._memo:
            self._memo[name] = self._truth(self._conditions[name])
        return self._memo[name]

    def _truth(self, node: Any) -> bool:
        if isinstance(node, bool):
            return node
        ((function, args),) = node.items()
        if function == "Condition":
            return self.condition(args)
        if function == "Fn::Equals":
            left, right = (self.resolve(a) for a in args)
            return bool(left == right)
        if function == "Fn::Not":
            return not self._truth(args[0])
        if function == "Fn::And":
            return all(self._truth(a) for a in args)
        if function == "Fn::Or":
            return any(self._truth(a) for a in args)
        raise ValueError(f"condition function {function} is not evaluated")

    def resolve(self, node: Any) -> Any:
        if isinstance(node, list):
            items = [self.resolve(item) for item in node]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, args),) = node.items()
            if key == "Ref" or key.startswith("Fn::"):
                return self._intrinsic(key, args)
        resolved = {key: self.resolve(value) for key, value in node.items()}
        return {key: value for key, value in resolved.items() if value is not NO_VALUE}

    def _intrinsic(self, function: str, args: Any) -> Any:
        if function == "Ref":
            return self._ref(args)
        if function == "Fn::GetAtt":
            logical_id, attribute = args if isinstance(args, list) else args.split(".")
            if logical_id not in self._resources:
                raise KeyError(f"GetAtt of unknown resource {logical_id}")
            return Att(logical_id, attribute)
        if function == "Fn::If":
            name, when_true, when_false = args
            return self.resolve(when_true if self.condition(name) else when_false)
        if function == "Fn::Sub":
            return self._sub(args)
        if function == "Fn::Join":
            delimiter, items = args
            return delimiter.join(str(i) for i in self.resolve(items))
        if function == "Fn::Select":
            index, items = args
            return self.resolve(items)[int(self.resolve(index))]
        if function == "Fn::Split":
            delimiter, text = args
            return str(self.resolve(text)).split(delimiter)
        if function in ("Fn::Equals", "Fn::Not", "Fn::And", "Fn::Or"):
            return self._truth({function: args})
        raise ValueError(f"intrinsic function {function} is not evaluated")

    def _ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self._parameters:
            return self._parameters[name]
        if name in self._resources:
            return Att(name, "Ref")
        raise KeyError(f"Ref to unknown name {name}")

    def _sub(self, args: Any) -> str:
        if isinstance(args, str):
            text, variables = args, {}
        else:
            text, raw_variables = args
            variables = {k: self.resolve(v) for k, v in raw_variables.items()}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(variables[name])
            if "." in name:
                logical_id, attribute = name.split(".", 1)
                return str(self._intrinsic("Fn::GetAtt", [logical_id, attribute]))
            value = self._ref(name)
            if isinstance(value, list):
                raise ValueError(f"list parameter {name} used in Fn::Sub")
            return str(value)

        return re.sub(r"\$\{([^}]+)\}", replace, text)
