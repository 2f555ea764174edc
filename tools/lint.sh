#!/bin/sh
# House rules a compiler does not check:
#  1. banned functions (curl's checksrc list);
#  2. includes go one way: lib <- consul health proxy <- sidecar;
#     consul/, health/ and proxy/ never include each other.
rc=0
banned='\b(strcpy|sprintf|strcat|atoi|strtok|gets|vsprintf)\s*\('
if grep -nE "$banned" lib/*.[ch] consul/*.[ch] health/*.[ch] proxy/*.[ch] \
        sidecar/*.[ch] tests/doubles/*/*.[ch] tests/unit/*.c tests/tools/*.c 2>/dev/null; then
    echo "lint: banned function used (use snprintf/strtol)" >&2; rc=1
fi
check_layer() { # dir, forbidden include prefixes...
    dir=$1; shift
    for f in "$dir"/*.[ch]; do
        [ -e "$f" ] || continue
        for bad in "$@"; do
            if grep -nE "^#include \"$bad/" "$f" >/dev/null; then
                echo "lint: $f includes $bad/: includes must go lib <- consul/health/proxy <- sidecar" >&2
                rc=1
            fi
        done
    done
}
check_layer lib consul health proxy sidecar
check_layer consul health proxy sidecar
check_layer health consul proxy sidecar
check_layer proxy consul health sidecar
[ $rc -eq 0 ] && echo "lint: ok"
exit $rc
