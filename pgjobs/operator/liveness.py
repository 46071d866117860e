"""The operator's /healthz: kopf's endpoint, failed by a probe when our own loops are stuck.

kopf answers /healthz while its event loop runs; the leader's loops (status sync, maintenance)
run beside it, and one stuck on an await that never returns would leave statuses frozen and
stalled jobs unrescued while the pod looks healthy. Each loop records when it went round
(`Context.went_round`, failing rounds included: an outage is retried, not a reason to
restart); the probe fails when the leader's loops have not for `--duty-stall-timeout`, or when
the leadership loop itself has ended, so the kubelet restarts the operator and a standby leads.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import kopf

from pgjobs.operator import context, handlers

logger = logging.getLogger(__name__)

STATUS_SYNC = "status sync"
MAINTENANCE = "maintenance"


class DutyStalled(kopf.PermanentError):
    """A loop of the operator's stopped going round: /healthz answers 500 at once (kopf retries
    a probe that fails otherwise, a minute later, and the probe's request waits for it)."""


def stalled_duties(rounds: Mapping[str, float], now: float, limit: float) -> list[str]:
    """The loops that last went round more than `limit` seconds ago, with how long."""
    return [f"{duty} ({now - at:.0f}s)" for duty, at in sorted(rounds.items()) if now - at > limit]


@kopf.on.probe(id="duties", registry=handlers.registry)
def duties(memo: kopf.Memo, **_: Any) -> str:
    ctx = context.of(memo)
    ended = [task.get_name() for task in ctx.background if task.done()]
    if ended:
        raise DutyStalled(f"the operator's own loop ended: {', '.join(ended)}")
    if not ctx.leading:
        return "following"
    stalled = stalled_duties(ctx.rounds, time.monotonic(), ctx.settings.duty_stall_timeout)
    if stalled:
        logger.error("the leader's loops are stuck, failing /healthz: %s", ", ".join(stalled))
        raise DutyStalled(f"stuck: {', '.join(stalled)}")
    return "leading"
