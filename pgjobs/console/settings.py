"""The console's settings, each default defined here once."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class ConsoleSettings:
    #: Where it listens: loopback by default, since the console has no login of its own.
    address: str = "127.0.0.1"
    port: int = 8090
    #: A kubeconfig for actions on PgJobs ("" : $KUBECONFIG, ~/.kube/config, else in-cluster).
    kubeconfig: str = ""
    context: str = ""
    #: How often open pages refresh their live parts, in seconds.
    refresh_seconds: float = 2.0
