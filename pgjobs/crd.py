"""The PgJob custom resource's name in the Kubernetes API: the one place it is declared.

The CRD (`crds/pgjobs.dev_pgjobs.yaml`) is checked against it by a test; the operator and the
`kubectl-pgjobs` plugin address PgJobs through it.
"""

from __future__ import annotations

GROUP = "pgjobs.dev"
VERSION = "v1alpha1"
PLURAL = "pgjobs"
SINGULAR = "pgjob"
KIND = "PgJob"
API_VERSION = f"{GROUP}/{VERSION}"
#: Held by every PgJob that has a row, so that its deletion waits until the operator removed the row.
FINALIZER = f"{GROUP}/row"
