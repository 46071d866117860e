"""The operator's memory of handled specs: a digest per PgJob that exists, nothing more."""

from __future__ import annotations

import sys
from typing import Any

import kopf

from pgjobs.operator.running import MemoryDiffBaseStorage


def _body(uid: str, args: dict[str, Any], deleting: bool = False) -> kopf.Body:
    meta: dict[str, Any] = {"uid": uid, "name": uid, "namespace": "t"}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return kopf.Body({"metadata": meta, "spec": {"task": "sleep", "args": args}})


def _remember(storage: MemoryDiffBaseStorage, body: kopf.Body) -> kopf.BodyEssence:
    essence = storage.build(body=body)
    storage.store(body=body, patch=kopf.Patch(), essence=essence)
    return essence


def test_a_large_spec_is_remembered_as_a_small_digest() -> None:
    storage = MemoryDiffBaseStorage()
    essence = _remember(storage, _body("a", {"blob": "x" * 1_000_000}))
    assert sys.getsizeof(str(essence)) < 300
    assert storage.fetch(body=_body("a", {})) == essence


def test_a_changed_spec_has_another_digest_and_the_same_spec_the_same() -> None:
    storage = MemoryDiffBaseStorage()
    first = storage.build(body=_body("a", {"n": 1, "m": 2}))
    assert storage.build(body=_body("a", {"m": 2, "n": 1})) == first
    assert storage.build(body=_body("a", {"n": 2, "m": 2})) != first


def test_memory_follows_the_pgjobs_that_exist() -> None:
    storage = MemoryDiffBaseStorage()
    for i in range(100):
        _remember(storage, _body(f"uid-{i}", {"i": i}))
    for i in range(100):
        _remember(storage, _body(f"uid-{i}", {"i": i}, deleting=True))
    assert len(storage) == 0
