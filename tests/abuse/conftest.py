"""The abuse suite: hostile PgJobs at the real API server, hostile jobs and results at real workers.

Tests that use the control plane's fixtures are e2e tests, as in the fault suites.
"""

from __future__ import annotations

from tests.faults.conftest import pytest_collection_modifyitems

__all__ = ["pytest_collection_modifyitems"]
