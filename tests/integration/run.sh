#!/bin/sh
# Runs every integration scenario (tests/integration/t_*.sh) and prints a
# closing "N passed, N failed" line. ONLY=pattern runs a subset.
cd "$(dirname "$0")" || exit 1
pass=0; fail=0; failed=""
for t in t_*.sh; do
    [ -e "$t" ] || continue
    case "$t" in *${ONLY:-}*) ;; *) continue ;; esac
    if bash "$t"; then pass=$((pass + 1)); else fail=$((fail + 1)); failed="$failed ${t%.sh}"; fi
done
[ -n "$failed" ] && echo "failed:$failed"
echo "integration: $pass passed, $fail failed"
[ $fail -eq 0 ]
