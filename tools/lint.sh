#!/bin/sh
# House rules a compiler does not check:
#  1. banned functions (curl's checksrc list);
#  2. includes go one way: lib <- consul health proxy <- sidecar;
#     consul/, health/ and proxy/ never include each other;
#  3. cppcheck (warnings, portability, performance) finds nothing. readdir
#     stays: readdir_r, which it suggests, is deprecated in glibc and the
#     daemon has one thread.
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
if ! command -v cppcheck >/dev/null 2>&1; then
    echo "lint: cppcheck not installed (make deps installs it)" >&2; rc=1
else
    cjson=$(pkg-config --variable=includedir libcjson 2>/dev/null)/cjson/cJSON.h
    out=$(cppcheck -q --error-exitcode=0 --enable=warning,portability,performance \
        --library=posix --std=c11 -I. -D__GNUC__ "-DCJSON_PUBLIC(t)=t" --include="$cjson" \
        --suppress=readdirCalled --template='{file}:{line}: {severity}: {message} [{id}]' \
        lib consul health proxy sidecar tests/doubles tests/tools tests/unit tests/fuzz 2>&1)
    if [ -n "$out" ]; then
        printf '%s\n' "$out" >&2; echo "lint: cppcheck findings above" >&2; rc=1
    fi
fi
[ $rc -eq 0 ] && echo "lint: ok"
exit $rc
