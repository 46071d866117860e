"""What each namespace may ask for: the cluster admin's policy of queues, tasks and limits.

Any namespace with `create pgjobs` could otherwise target any queue, so a worker pool with
powerful tasks (`shell`) would be reachable from every namespace. The policy is a YAML (or
JSON) file the operator reads once at start (`--policy-file`; the chart renders
`operator.policy` into a ConfigMap and restarts the operator when it changes):

    contact: the platform team (#platform)
    rules:
      - namespaces: [reports-*]
        queues: [reports]
        tasks: [render, "pdf.*"]
        maxUnfinished: 200
        maxTimeoutSeconds: 3600
      - namespaces: ["*"]
        queues: [default]
        tasks: [sleep, noop]

The first rule whose `namespaces` pattern matches a PgJob's namespace is its rule; a namespace
no rule matches, like every namespace without a policy file, may use everything. Patterns are
shell-style (`*`, `?`, `[...]`), matched against the whole name. A file that cannot be read or
says anything this module does not understand stops the operator at start: a policy silently
read as "everything allowed" would be worse than none.

The operator applies it when it turns a PgJob into a row (`pgjobs.operator.handlers`): a queue
or task the rule does not allow, or a value over a maximum, ends the PgJob Failed with a
message naming the namespace, what was refused and `contact`.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from pgjobs.store.records import ResourceJob

#: Who a refused PgJob's author is told to ask when the policy names no one.
DEFAULT_CONTACT = "the cluster administrator (the pgjobs operator's policy)"
EVERYTHING = ("*",)


class PolicyError(ValueError):
    """The policy file cannot be used: the operator does not start."""


class Refused(Exception):
    """A PgJob the policy does not allow; the message says why and whom to ask."""


@dataclasses.dataclass(frozen=True)
class Rule:
    """What the namespaces matching `namespaces` may ask for."""

    namespaces: tuple[str, ...] = EVERYTHING
    queues: tuple[str, ...] = EVERYTHING
    tasks: tuple[str, ...] = EVERYTHING
    #: PgJobs of one namespace that may be Pending or Running at once (None: no limit).
    max_unfinished: int | None = None
    #: The largest spec.timeoutSeconds; a PgJob without one gets this one (None: no maximum).
    max_timeout_seconds: int | None = None
    #: The largest spec.maxAttempts (None: the CRD's maximum).
    max_attempts: int | None = None

    def matches(self, namespace: str) -> bool:
        return _any_match(self.namespaces, namespace)

    @property
    def unrestricted(self) -> bool:
        return self == dataclasses.replace(UNRESTRICTED, namespaces=self.namespaces)


UNRESTRICTED = Rule()


@dataclasses.dataclass(frozen=True)
class Policy:
    rules: tuple[Rule, ...] = ()
    #: Named in every refusal: who can change the policy.
    contact: str = DEFAULT_CONTACT

    def rule_for(self, namespace: str) -> Rule:
        """The first rule that matches the namespace; a namespace none matches may use everything."""
        return next((rule for rule in self.rules if rule.matches(namespace)), UNRESTRICTED)

    def check(self, resource: ResourceJob) -> None:
        """Raise Refused when the namespace's rule does not allow this PgJob's row as asked for."""
        rule = self.rule_for(resource.namespace)
        job = resource.job
        refusals = []
        if not _any_match(rule.queues, job.queue):
            refusals.append(f"may not use queue {job.queue!r} (allowed: {', '.join(rule.queues)})")
        if not _any_match(rule.tasks, job.task):
            refusals.append(f"may not run task {job.task!r} (allowed: {', '.join(rule.tasks)})")
        if _over(job.timeout_seconds, rule.max_timeout_seconds):
            refusals.append(
                f"may not set timeoutSeconds {job.timeout_seconds} (at most {rule.max_timeout_seconds})"
            )
        if _over(job.max_attempts, rule.max_attempts):
            refusals.append(f"may not set maxAttempts {job.max_attempts} (at most {rule.max_attempts})")
        if refusals:
            raise self.refusal(resource.namespace, " and ".join(refusals))

    def refusal(self, namespace: str, what: str) -> Refused:
        return Refused(f"namespace {namespace!r} {what}; ask {self.contact} to change the policy")

    def bounded(self, resource: ResourceJob) -> ResourceJob:
        """The row as the rule lets it be: no timeout means the maximum, nothing above a maximum.

        A new PgJob over a maximum is refused by `check`; this keeps a later spec update (both
        fields may change) from raising the row past the maximum.
        """
        rule = self.rule_for(resource.namespace)
        job = resource.job
        changes: dict[str, Any] = {}
        if rule.max_timeout_seconds is not None and (
            job.timeout_seconds is None or job.timeout_seconds > rule.max_timeout_seconds
        ):
            changes["timeout_seconds"] = rule.max_timeout_seconds
        if _over(job.max_attempts, rule.max_attempts):
            changes["max_attempts"] = rule.max_attempts
        if not changes:
            return resource
        return dataclasses.replace(resource, job=dataclasses.replace(job, **changes))


def _over(value: int | None, maximum: int | None) -> bool:
    return value is not None and maximum is not None and value > maximum


def _any_match(patterns: tuple[str, ...], name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


# -- the file -------------------------------------------------------------------------------

#: The keys of a rule, by their name in the file.
_LISTS = {"namespaces": "namespaces", "queues": "queues", "tasks": "tasks"}
_LIMITS = {
    "maxUnfinished": ("max_unfinished", 0),
    "maxTimeoutSeconds": ("max_timeout_seconds", 1),
    "maxAttempts": ("max_attempts", 1),
}


def load(path: str | None) -> Policy:
    """The policy in the file at `path` (None or "": none, everything allowed)."""
    if not path:
        return Policy()
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise PolicyError(f"policy file {path}: cannot be read: {error.strerror or error}") from error
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise PolicyError(f"policy file {path}: not YAML: {error}") from error
    return parse(data, path)


def parse(data: Any, source: str = "policy") -> Policy:
    """A Policy from the file's data; anything unexpected is a PolicyError naming where."""
    if data is None:
        return Policy()  # an empty file, as an empty ConfigMap key: no rules
    _expect(isinstance(data, Mapping), source, "", "must be a mapping with `rules` (and `contact`)")
    _unknown(data, {"rules", "contact"}, source, "")
    contact = data.get("contact", DEFAULT_CONTACT)
    ok = isinstance(contact, str) and contact.strip() != ""
    _expect(ok, source, "contact", "must be a non-empty string")
    rules = data.get("rules", [])
    _expect(isinstance(rules, list), source, "rules", "must be a list")
    return Policy(tuple(_rule(rule, source, f"rules[{i}]") for i, rule in enumerate(rules)), contact)


def _rule(data: Any, source: str, where: str) -> Rule:
    _expect(isinstance(data, Mapping), source, where, "must be a mapping")
    _unknown(data, {*_LISTS, *_LIMITS}, source, where)
    _expect("namespaces" in data, source, where, "needs `namespaces` (a list of names or patterns)")
    values: dict[str, Any] = {}
    for key, attribute in _LISTS.items():
        if key in data:
            values[attribute] = _patterns(data[key], source, f"{where}.{key}")
    for key, (attribute, low) in _LIMITS.items():
        value = data.get(key)
        ok = value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= low)
        _expect(ok, source, f"{where}.{key}", f"must be a whole number >= {low}, got {value!r}")
        values[attribute] = value
    return Rule(**values)


def _patterns(value: Any, source: str, where: str) -> tuple[str, ...]:
    ok = isinstance(value, list) and all(isinstance(item, str) and item for item in value)
    _expect(ok, source, where, f"must be a list of names or patterns, got {json.dumps(value, default=str)}")
    return tuple(value)


def _unknown(data: Mapping[Any, Any], known: set[str], source: str, where: str) -> None:
    unknown = sorted(str(key) for key in data if key not in known)
    known_keys = ", ".join(sorted(known))
    _expect(not unknown, source, where, f"unknown key(s) {', '.join(unknown)}; known: {known_keys}")


def _expect(condition: bool, source: str, where: str, message: str) -> None:
    if not condition:
        raise PolicyError(f"policy file {source}: {where or 'top level'}: {message}")
