#!/bin/bash
# Runs every integration scenario (tests/integration/t_*.sh) and prints a
# closing "N passed, N failed" line. ONLY=pattern runs a subset.
#
# JOBS=N runs N scenarios at once (default 3): most of a scenario's time is
# spent waiting on timers (TTL, resync, quiescence), not on the CPU, and each
# one has its own directory, its own ports and its own processes. A
# scenario's output is printed whole when it ends, so lines never interleave.
#
# Scenarios that load both cores for a minute (t_h2: 1,000 upstreams) run
# alone, after the others, so their load cannot upset the timing of those.
cd "$(dirname "$0")" || exit 1
jobs=${JOBS:-3}
heavy=" t_h2.sh "
out=$(mktemp -d "${TMPDIR:-/tmp}/cs-run.XXXXXX")
pass=0; fail=0; failed=""; running=0

# Prints the output of, and counts, every scenario that has ended.
reap() {
    local rc t
    for rc in "$out"/*.rc; do
        [ -e "$rc" ] || continue
        t=$(basename "$rc" .rc)
        cat "$out/$t.out"
        if [ "$(cat "$rc")" = 0 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); failed="$failed $t"; fi
        rm -f "$rc" "$out/$t.out"
        running=$((running - 1))
    done
}

# run T: starts scenario T once fewer than MAX (default jobs) are running.
run() {
    while [ "$running" -ge "${2:-$jobs}" ]; do
        wait -n 2>/dev/null || sleep 0.1
        reap
    done
    n=${t%.sh}
    { bash "$t" > "$out/$n.out" 2>&1; echo $? > "$out/$n.rc.tmp"; mv "$out/$n.rc.tmp" "$out/$n.rc"; } &
    running=$((running + 1))
}
drain() {
    while [ "$running" -gt 0 ]; do
        wait -n 2>/dev/null || sleep 0.1
        reap
    done
}
for t in t_*.sh; do
    [ -e "$t" ] || continue
    case "$t" in *${ONLY:-}*) ;; *) continue ;; esac
    case "$heavy" in *" $t "*) continue ;; esac
    run "$t"
done
drain
for t in $heavy; do
    [ -e "$t" ] || continue
    case "$t" in *${ONLY:-}*) ;; *) continue ;; esac
    run "$t" 1
    drain
done
rm -rf "$out"
[ -n "$failed" ] && echo "failed:$failed"
echo "integration: $pass passed, $fail failed"
[ $fail -eq 0 ]
