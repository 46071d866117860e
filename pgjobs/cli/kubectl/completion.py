"""`kubectl_complete-pgjobs`: shell completion for `kubectl pgjobs`, as kubectl asks plugins for it.

kubectl (1.26 and later) completes a plugin's arguments by running `kubectl_complete-<plugin>`
with the words typed so far, the last one being the word to complete (possibly empty). It
expects one candidate per line and a last line `:<directive>` in cobra's format; 4 means "no
file names". Verbs and flags come from the plugin's own parser, so completion cannot drift from
it; the names of PgJobs, PgCronJobs (`trigger`) and PgQueues (`pause`, `resume`) come from the
API server, and any failure there just completes nothing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pgjobs import crd
from pgjobs.cli.kubectl.arguments import build_parser

NO_FILE_COMPLETION = ":4"
#: The verbs that take names, and of what.
NAMES_OF = {
    **dict.fromkeys(("stop", "start", "restart", "watch", "logs"), crd.PLURAL),
    "trigger": crd.CRON_PLURAL,
    **dict.fromkeys(("pause", "resume"), crd.QUEUE_PLURAL),
}


def verb_parsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse exposes subparsers only through its actions
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def flags_of(parser: argparse.ArgumentParser) -> list[str]:
    return sorted(
        flag for action in parser._actions for flag in action.option_strings if flag.startswith("--")
    )


def names(words: Sequence[str], plural: str) -> list[str]:
    """Names of `plural` where the typed words point (their namespace); none when the API server
    cannot be asked."""
    from pgjobs.cli.kubectl.api import connect

    try:
        opts, _ = build_parser().parse_known_args(list(words))
        return connect(opts).names_of(plural)
    except (Exception, SystemExit):  # completion never prints a traceback into the shell
        return []


def candidates(words: Sequence[str]) -> list[str]:
    """What may come next after `kubectl pgjobs` and `words` (the last being the partial word)."""
    *typed, partial = list(words) or [""]
    parser = build_parser()
    verbs = verb_parsers(parser)
    verb = next((w for w in typed if w in verbs), None)
    if partial.startswith("-"):
        options = flags_of(verbs[verb] if verb else parser)
    elif verb is None:
        options = sorted(verbs)
    elif verb in NAMES_OF:
        # A stand-in name after the verb: some verbs need one to parse at all.
        options = names([w for w in typed if w != verb] + [verb, "name"], NAMES_OF[verb])
    else:
        options = []
    return [option for option in options if option.startswith(partial)]


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    for candidate in candidates(words):
        print(candidate)
    print(NO_FILE_COMPLETION)
    return 0
