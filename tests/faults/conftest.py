"""The fault suites: tests that use the control plane's fixtures (tests/cluster_fixtures.py) are e2e.

The queue-level fault tests need PostgreSQL only; the operator-level ones use the control plane
(a real kube-apiserver + etcd) and are marked `e2e` here, like every test of tests/e2e.
"""

from __future__ import annotations

import pytest

#: Fixtures that need the control plane: a test using any of them is an e2e test.
CONTROL_PLANE_FIXTURES = {"controlplane", "kube", "namespace", "crd", "services", "recorder"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if CONTROL_PLANE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)
