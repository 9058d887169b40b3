#!/usr/bin/env bash
# A CI pipeline whose steps are separate processes sharing jobs through the asjob store:
#
#   step 1  starts the provisioning jobs (one `asjob start` each: it prints the id and exits)
#   step 2  waits for them with a timeout and gates on the exit code (0 / 1 failed / 2 timeout)
#   step 3  receives their results
#   step 4  shows the gate on a failing job and on a slow one
#   step 5  applies retention, as a long-lived runner would
#
# No broker or server: the store is one SQLite file ($ASJOB_STORE), a temporary one here.
# Runs non-interactively (CI=true, no stdin); exits non-zero if anything is not as expected.
# Run: PATH=.venv/bin:$PATH bash samples/ci_pipeline.sh     (or ASJOB=/path/to/asjob bash ...)
set -euo pipefail

ASJOB="${ASJOB:-asjob}"
here="$(cd "$(dirname "$0")" && pwd)"
store_dir="$(mktemp -d)"
export ASJOB_STORE="$store_dir/jobs.db"
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"  # so workers can import ci_jobs

cleanup() {
    "$ASJOB" stop --state Running >/dev/null 2>&1 || true
    rm -rf "$store_dir"
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }
fail() { echo "ci_pipeline: $*" >&2; exit 1; }
expect_exit() {  # expect_exit CODE COMMAND...: run COMMAND, fail unless it exits with CODE
    local want=$1 got=0
    shift
    "$@" || got=$?
    [[ $got -eq $want ]] || fail "'$*' exited $got, expected $want"
}

step "1. start the provisioning jobs; each start returns at once"
ids=()
for vm in web-1 web-2 db-1; do
    ids+=("$("$ASJOB" start ci_jobs:provision "$vm" 2 --name "provision-$vm")")
done
echo "started jobs ${ids[*]}"
"$ASJOB" get

step "2. wait for them, at most 60 s, and gate on the outcome"
if "$ASJOB" wait "${ids[@]}" --timeout 60; then
    echo "all ${#ids[@]} jobs completed"
else
    fail "provisioning did not complete (asjob wait exited $?)"
fi

step "3. receive their results (what each printed goes to stderr)"
results="$("$ASJOB" receive "${ids[@]}" --json)"
echo "$results"
[[ $(grep -c '"ip": "10\.0\.0\.' <<<"$results") -eq ${#ids[@]} ]] || fail "missing results"
[[ -z "$("$ASJOB" receive "${ids[0]}")" ]] || fail "a result was received twice"

step "4. the gate on a failing job (exit 1) and on a slow one (exit 2)"
bad="$("$ASJOB" start ci_jobs:provision bad-vm 0 --name provision-bad)"
expect_exit 1 "$ASJOB" wait "$bad" --timeout 60
expect_exit 1 "$ASJOB" receive "$bad"
slow="$("$ASJOB" start ci_jobs:provision slow-vm 1 --kw seconds=60 --name provision-slow)"
expect_exit 2 "$ASJOB" wait "$slow" --timeout 1
"$ASJOB" stop "$slow"
expect_exit 1 "$ASJOB" wait "$slow"
"$ASJOB" get --state Failed --state Stopped

step "5. retention: remove finished jobs older than 7 days, then everything finished"
"$ASJOB" remove --state Completed --older-than 7d
[[ $("$ASJOB" get --json | grep -c '"id"') -eq 5 ]] || fail "retention removed recent jobs"
"$ASJOB" remove --state Completed --state Failed --state Stopped
[[ -z "$("$ASJOB" get)" ]] || fail "jobs are left in the store"

echo
echo "ci_pipeline: all steps behaved as expected"
