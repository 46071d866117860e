#!/usr/bin/env bash
# Run every test suite, in two groups at once: the suites that need Kubernetes (the node, the
# control plane, the browser against it) and those that need PostgreSQL alone or nothing. Each
# group is its own pytest session with its own servers; most of a suite's time is spent waiting
# for processes, pods and timers, so on 2 cores the two groups together take about as long as
# the longer one. Lines carry their group's name; both groups' summaries end the output.
#
# usage: tools/run-suites.sh PYTEST [ARGS...]   (e.g. .venv/bin/pytest -ra -p no:cacheprovider)
# Fails when either group fails, including pytest's exit code 5 (no test collected).
set -uo pipefail
cd "$(dirname "$0")/.."

declare -A GROUPS_OF=(
    [kube]="tests/cluster tests/e2e tests/browser"
    [db]="tests/integration tests/faults tests/abuse tests/unit tests/packaging tests/kind"
)

# Every directory of tests/ that holds tests must be in a group: a new suite is never skipped.
covered=" ${GROUPS_OF[kube]} ${GROUPS_OF[db]} "
for dir in tests/*/; do
    dir=${dir%/}
    if compgen -G "$dir/test_*.py" >/dev/null || compgen -G "$dir/*/test_*.py" >/dev/null; then
        if [[ $covered != *" $dir "* ]]; then
            echo "tools/run-suites.sh: $dir has tests but is in no group" >&2
            exit 2
        fi
    fi
done

logs=$(mktemp -d)
pids=()
for group in kube db; do
    # shellcheck disable=SC2086  # the group's directories are words
    ( "$@" ${GROUPS_OF[$group]} 2>&1 | tee "$logs/$group.log" | sed -u "s/^/[$group] /" ) &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
    wait "$pid" || status=1
done
for group in kube db; do
    echo "==> $group: $(grep -E '^=+ .*(passed|failed|error|no tests ran).* =+$' "$logs/$group.log" | tail -1)"
done
rm -rf "$logs"
exit $status
