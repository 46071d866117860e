"""The `kubectl-pgjobs` plugin: thin, documented verbs over the PgJob API.

Installed as the console script `kubectl-pgjobs`, so kubectl finds it as
`kubectl pgjobs ...`. Every verb is one or two plain Kubernetes API calls on
`pgjobs.dev/v1alpha1` PgJob objects, and each verb's --help shows the plain
kubectl command that does the same: the plugin is a convenience, never the
only way. It never talks to PostgreSQL; the operator turns spec changes into
actions and reports back in the status.

`arguments` parses the command line and holds the help; `verbs` runs each verb through `api`
(a typed wrapper over the official client) on the JSON of `objects`; `watching` is the live
watch; `errors` has the one-line error and the exit codes.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from pgjobs.cli.kubectl.api import connect
from pgjobs.cli.kubectl.arguments import parse_command_line
from pgjobs.cli.kubectl.errors import EXIT_FAILED, PluginError
from pgjobs.cli.kubectl.watching import Selection, run_watch
from pgjobs.cli.options import missing_extra_text

__all__ = ["Selection", "connect", "main", "run_watch"]


#: The modules of the `kubectl` extra (pyproject.toml).
KUBECTL_EXTRA = frozenset({"kubernetes", "rich", "urllib3"})


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `kubectl-pgjobs` console script."""
    opts = parse_command_line(argv)
    try:
        return int(opts.func(opts, sys.stdout))
    except PluginError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except ModuleNotFoundError as missing:
        if missing.name not in KUBECTL_EXTRA:
            raise
        print(f"error: {missing_extra_text('kubectl pgjobs', 'kubectl', missing.name)}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
