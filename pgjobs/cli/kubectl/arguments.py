"""The plugin's command line: its verbs, their options, and help that shows the plain kubectl way."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from pgjobs.cli.kubectl import objects
from pgjobs.cli.kubectl.logs import cmd_logs
from pgjobs.cli.kubectl.objects import DEFAULT_PRUNE_PHASES, FINISHED_PHASES, PRIORITIES
from pgjobs.cli.kubectl.verbs import (
    cmd_pause,
    cmd_prune,
    cmd_restart,
    cmd_resume,
    cmd_start,
    cmd_stop,
    cmd_submit,
    cmd_trigger,
    cmd_version,
    cmd_watch,
)
from pgjobs.cli.times import parse_duration, parse_time

DESCRIPTION = """\
Manage PgJobs (pgjobs.dev/v1alpha1): background jobs run by pgjobs workers
(and trigger PgCronJobs, which create PgJobs on a schedule; pause and resume
queues through their PgQueue).

Each verb is a thin layer over the Kubernetes API; its --help shows the plain
kubectl command that does the same. To list jobs use kubectl itself:
  kubectl get pgjobs            (or: kubectl get pgj -o wide, kubectl get pgjobs -w)
"""


EPILOG = """\
examples:
  kubectl pgjobs submit sleep --args '{"seconds": 10, "steps": 10}' --priority High
  kubectl pgjobs watch --selector app.kubernetes.io/part-of=pgjobs-demo
  kubectl pgjobs stop my-job -n team-a; kubectl pgjobs start my-job -n team-a
  kubectl pgjobs restart -l app=batch
  kubectl pgjobs prune --phase Completed,Failed --older-than 1h --dry-run
  kubectl pgjobs trigger nightly-report
  kubectl pgjobs logs my-job -f
  kubectl pgjobs pause default; kubectl pgjobs resume default
  kubectl pgjobs version

global flags (-n/--namespace, --context, --kubeconfig, --request-timeout)
go before or after the verb, as with kubectl itself.

exit codes: 0 ok; 1 a job Failed/was Stopped, or an API call failed;
            2 bad usage; 124 watch timed out
"""


VERB_HELP = {
    "logs": (
        "print what a PgJob's task logged (-f: until it is finished)",
        """\
equivalent:
  kubectl get --raw /apis/logs.pgjobs.dev/v1alpha1/namespaces/NS/pgjoblogs/NAME
served by the pgjobs operator through the API server: whoever may get the
PgJob may read its logs. Lines are "TIME [ATTEMPT] LEVEL MESSAGE", every
attempt's in order (--attempt N: only those of attempt N).
""",
    ),
    "submit": (
        "create a PgJob for TASK and print its name",
        """\
equivalent:
  kubectl create -f - <<EOF
  apiVersion: pgjobs.dev/v1alpha1
  kind: PgJob
  metadata: {generateName: sleep-}
  spec: {task: sleep, args: {seconds: 10}, priority: High}
  EOF

examples:
  kubectl pgjobs submit sleep --args '{"seconds": 5}'
  kubectl pgjobs submit resize --name resize-42 --priority High --max-attempts 5 --wait
  kubectl pgjobs submit sleep -n team-a --label app=batch -o name
  kubectl pgjobs submit sleep --in 10m          # spec.runAt: ten minutes from now
  kubectl pgjobs submit sleep --dry-run=client -o yaml > job.yaml   # then: kubectl apply -f job.yaml
""",
    ),
    "stop": (
        "stop PgJobs: Pending ones become Stopped, Running ones are cancelled",
        """\
equivalent:
  kubectl patch pgjob NAME --type merge -p '{"spec":{"stopped":true}}'
with -l SELECTOR, every PgJob matching it (kubectl get pgjobs -l SELECTOR).
""",
    ),
    "start": (
        "start Stopped PgJobs again (they become Pending)",
        """\
equivalent:
  kubectl patch pgjob NAME --type merge -p '{"spec":{"stopped":false}}'
with -l SELECTOR, every PgJob matching it (kubectl get pgjobs -l SELECTOR).
""",
    ),
    "restart": (
        "start a new run of Completed/Failed/Stopped PgJobs (increments spec.restarts)",
        """\
equivalent (N = current spec.restarts + 1):
  kubectl patch pgjob NAME --type merge -p '{"spec":{"restarts":N}}'
the plugin uses a JSON patch that first tests the current value, so two
concurrent restarts are two restarts:
  kubectl patch pgjob NAME --type json -p \\
    '[{"op":"test","path":"/spec/restarts","value":0},
      {"op":"replace","path":"/spec/restarts","value":1}]'
with -l SELECTOR, every PgJob matching it (kubectl get pgjobs -l SELECTOR).
""",
    ),
    "prune": (
        "delete finished PgJobs (by phase, optionally older than a duration)",
        """\
equivalent (kubectl has no age filter):
  kubectl delete pgjobs --field-selector status.phase=Completed
a PgJob that changed after it was listed (e.g. restarted) is kept.
spec.ttlSecondsAfterFinished makes the operator delete jobs by itself.
""",
    ),
    "watch": (
        "show live progress until the shown PgJobs are finished",
        """\
equivalent:
  kubectl get pgjobs -w        (-A: kubectl get pgjobs -A -w)
shows the named jobs, or the jobs matching --selector, or else the jobs of
the namespace that are not finished yet (--all: finished ones too), plus
jobs created while watching. Progress bars on a terminal, one line per
change otherwise. Exits 0 when all are Completed, 1 if any is Failed or
Stopped (or deleted), 124 on --timeout.
""",
    ),
    "trigger": (
        "create one PgJob now from a PgCronJob's jobTemplate (as kubectl create job --from=cronjob/NAME)",
        """\
equivalent: create a PgJob named CRONJOB-manual-XXXXX with the PgCronJob's
.spec.jobTemplate (its labels, annotations and spec), the label
pgjobs.dev/cronjob=CRONJOB and an ownerReference to the PgCronJob
(controller: true), e.g. from:
  kubectl get pgcronjob CRONJOB -o jsonpath='{.spec.jobTemplate}'
the run counts for concurrencyPolicy and the history limits like a scheduled
one, and is deleted with the PgCronJob; the schedule is not changed.

examples:
  kubectl pgjobs trigger nightly-report -n reports
  kubectl pgjobs trigger nightly-report --wait
""",
    ),
    "pause": (
        "pause queues: workers start no new job of them (running jobs finish)",
        """\
equivalent (a PgQueue is cluster-scoped, named after its queue):
  kubectl patch pgqueue QUEUE --type merge -p '{"spec":{"paused":true}}'
creates the PgQueue when the queue has none yet. Who may pause is Kubernetes
RBAC on pgqueues (cluster admins by default). A paused queue's autoscaling
backlog is 0, so its workers can scale in. See: kubectl get pgqueues
""",
    ),
    "resume": (
        "resume paused queues: workers claim their jobs again at once",
        """\
equivalent:
  kubectl patch pgqueue QUEUE --type merge -p '{"spec":{"paused":false}}'
""",
    ),
    "version": (
        "print the plugin's version and, where visible, the operators' versions",
        """\
equivalent:
  kubectl get deployments -A -l app.kubernetes.io/name=pgjobs,app.kubernetes.io/component=operator \\
    -L app.kubernetes.io/version
""",
    ),
}


def parse_phases(text: str) -> frozenset[str]:
    """A comma-separated list of finished phases, checked against the known ones."""
    phases = frozenset(p.strip() for p in text.split(",") if p.strip())
    unknown = phases - FINISHED_PHASES
    if not phases or unknown:
        raise ValueError(f"invalid phase list {text!r}: choose from {', '.join(sorted(FINISHED_PHASES))}")
    return phases


def time_arg(text: str) -> str:
    """An RFC 3339 time, checked here and passed on as written."""
    try:
        parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def duration_arg(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def phases_arg(text: str) -> frozenset[str]:
    try:
        return parse_phases(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


OUTPUT_FORMATS = ("name", "json", "yaml")
SELECTED_VERBS = frozenset({"stop", "start", "restart"})
DRY_RUN_MODES = ("none", "client", "server")


def add_global_flags(parser: argparse.ArgumentParser, *, after_verb: bool) -> None:
    """kubectl's global flags; after the verb they override nothing unless given (SUPPRESS)."""
    default: Any = argparse.SUPPRESS if after_verb else None
    group = parser.add_argument_group("global flags (before or after the verb, as in kubectl)")
    group.add_argument(
        "--kubeconfig", default=default, help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)"
    )
    group.add_argument("--context", default=default, help="kubeconfig context (default: the current one)")
    group.add_argument(
        "-n",
        "--namespace",
        default=default,
        help="namespace (default: the context's namespace, else default)",
    )
    group.add_argument(
        "--request-timeout",
        type=duration_arg,
        default=default,
        metavar="DURATION",
        help="give up on each API request after this (30s, 1m; 0 = no limit, the default)",
    )


def add_verb(sub: Any, name: str, func: Callable[[argparse.Namespace, TextIO], int]) -> Any:
    summary, details = VERB_HELP[name]
    parser = sub.add_parser(
        name,
        help=summary,
        description=summary,
        epilog=details,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(func=func)
    add_global_flags(parser, after_verb=True)
    return parser


def label_arg(text: str) -> tuple[str, str]:
    """A --label KEY=VALUE, checked against Kubernetes' label syntax."""
    key, sep, value = text.partition("=")
    if not sep or not objects.valid_label(key, value):
        raise argparse.ArgumentTypeError(
            f"invalid label {text!r}: use KEY=VALUE, e.g. team=data or app.kubernetes.io/part-of=reports"
        )
    return key, value


def add_submit(sub: Any) -> None:
    p = add_verb(sub, "submit", cmd_submit)
    p.add_argument("task", metavar="TASK", help="name of a registered task, e.g. sleep")
    p.add_argument("--args", default="{}", help="task arguments as a JSON object (default {})")
    p.add_argument("--priority", choices=PRIORITIES, help="default: Regular")
    p.add_argument("--queue", help="queue name (default: default)")
    p.add_argument("--max-attempts", type=int, metavar="N", help="1..100 (default 3)")
    p.add_argument("--timeout", type=int, metavar="S", help="per-attempt timeout in seconds")
    p.add_argument("--ttl", type=int, metavar="S", help="delete the PgJob S seconds after it finished")
    p.add_argument(
        "--unique-key",
        metavar="KEY",
        help="spec.uniqueKey: no second job while an unfinished one of the queue has this key",
    )
    when = p.add_mutually_exclusive_group()
    when.add_argument("--at", type=time_arg, metavar="TIME", help="not before TIME (spec.runAt, RFC 3339)")
    when.add_argument(
        "--in", dest="after", type=duration_arg, metavar="DURATION", help="not before this from now (10m, 1h)"
    )
    names = p.add_mutually_exclusive_group()
    names.add_argument("--name", help="exact object name")
    names.add_argument("--generate-name", metavar="PREFIX", help="name prefix (default: TASK-)")
    p.add_argument(
        "--label",
        dest="labels",
        action="append",
        type=label_arg,
        default=[],
        metavar="KEY=VALUE",
        help="a label on the PgJob (repeatable)",
    )
    add_output(p)
    p.add_argument(
        "--dry-run",
        nargs="?",
        const="client",
        default="none",
        choices=DRY_RUN_MODES,
        help="client: print the manifest only; server: also let the API server validate it",
    )
    add_wait(p)


def add_output(p: argparse.ArgumentParser) -> None:
    """-o for the verbs that create a PgJob."""
    p.add_argument(
        "-o",
        "--output",
        choices=OUTPUT_FORMATS,
        help="print the PgJob as name (pgjob.pgjobs.dev/NAME), json or yaml (default: its bare name)",
    )


def add_wait(p: argparse.ArgumentParser) -> None:
    """--wait and --wait-timeout for the verbs that create a PgJob."""
    p.add_argument("--wait", action="store_true", help="watch the job until it finished")
    p.add_argument("--wait-timeout", type=duration_arg, metavar="DURATION", help="give up waiting after this")


def add_selected_verb(sub: Any, name: str, func: Callable[[argparse.Namespace, TextIO], int]) -> None:
    p = add_verb(sub, name, func)
    p.add_argument("names", nargs="*", metavar="NAME", help="PgJob names (or -l SELECTOR)")
    p.add_argument("-l", "--selector", help="label selector instead of names, e.g. app=batch")


def add_prune(sub: Any) -> None:
    p = add_verb(sub, "prune", cmd_prune)
    p.add_argument(
        "--phase",
        type=phases_arg,
        default=frozenset(DEFAULT_PRUNE_PHASES),
        metavar="P1,P2",
        help="phases to delete (default Completed,Failed; Stopped allowed)",
    )
    p.add_argument(
        "--older-than",
        type=duration_arg,
        metavar="DURATION",
        help="only jobs finished at least this long ago: 30s, 10m, 1h, 2d",
    )
    p.add_argument("--dry-run", action="store_true", help="only print what would be deleted")
    p.add_argument("-l", "--selector", help="label selector, e.g. app=batch")


def add_watch(sub: Any) -> None:
    p = add_verb(sub, "watch", cmd_watch)
    p.add_argument("names", nargs="*", metavar="NAME", help="PgJob names (default: see below)")
    p.add_argument("-l", "--selector", help="label selector, e.g. app.kubernetes.io/part-of=demo")
    p.add_argument(
        "-A",
        "--all-namespaces",
        action="store_true",
        help="PgJobs of every namespace (shown as NAMESPACE/NAME)",
    )
    p.add_argument("--all", action="store_true", help="include jobs already finished")
    p.add_argument("--timeout", type=duration_arg, metavar="DURATION", help="give up after this")


def add_trigger(sub: Any) -> None:
    p = add_verb(sub, "trigger", cmd_trigger)
    p.add_argument("cronjob", metavar="CRONJOB", help="name of a PgCronJob")
    add_output(p)
    add_wait(p)


def add_queue_verb(sub: Any, verb: str, command: Callable[[argparse.Namespace, TextIO], int]) -> None:
    p = add_verb(sub, verb, command)
    p.add_argument("queues", nargs="+", metavar="QUEUE", help="queue names (the PgQueues' names)")


def add_logs(sub: Any) -> None:
    p = add_verb(sub, "logs", cmd_logs)
    p.add_argument("name", metavar="NAME", help="PgJob name")
    p.add_argument("--attempt", type=int, metavar="N", help="only the lines of attempt N")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until it is finished")


def add_version(sub: Any) -> None:
    add_verb(sub, "version", cmd_version)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubectl pgjobs",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_global_flags(parser, after_verb=False)
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    add_submit(sub)
    add_selected_verb(sub, "stop", cmd_stop)
    add_selected_verb(sub, "start", cmd_start)
    add_selected_verb(sub, "restart", cmd_restart)
    add_prune(sub)
    add_watch(sub)
    add_trigger(sub)
    add_queue_verb(sub, "pause", cmd_pause)
    add_queue_verb(sub, "resume", cmd_resume)
    add_logs(sub)
    add_version(sub)
    return parser


def parse_command_line(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse and check what argparse alone cannot: exits 2 with argparse's usage line on misuse."""
    parser = build_parser()
    opts = parser.parse_args(argv)
    if opts.verb in SELECTED_VERBS and bool(opts.names) == bool(opts.selector):
        parser.error(f"{opts.verb}: give PgJob names or -l SELECTOR (one of the two)")
    if opts.verb == "submit" and opts.wait and opts.dry_run != "none":
        parser.error("submit: --wait cannot follow a --dry-run (nothing is created)")
    return opts
