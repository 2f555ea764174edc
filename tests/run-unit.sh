#!/bin/sh
# Runs every unit test program; each is a Check runner that prints its own
# summary. Exits non-zero if any failed and prints a combined closing line.
pass=0; fail=0
for t in "$@"; do
    out=$("$t" 2>&1); rc=$?
    printf '%s\n' "$out" | grep -E '^[0-9]+%: Checks' | sed "s|^|$(basename "$t"): |"
    p=$(printf '%s\n' "$out" | sed -n 's/^[0-9]*%: Checks: \([0-9]*\), Failures: \([0-9]*\), Errors: \([0-9]*\).*/\1 \2 \3/p')
    if [ -n "$p" ]; then
        set -- $p "$@"; n=$1; f=$(( $2 + $3 )); shift 3
        pass=$((pass + n - f)); fail=$((fail + f))
    fi
    if [ $rc -ne 0 ]; then
        printf '%s\n' "$out" | grep -v '^[0-9]*%: Checks' | head -40
        [ -z "$p" ] && fail=$((fail + 1))
    fi
done
echo "unit: $pass passed, $fail failed"
[ $fail -eq 0 ]
