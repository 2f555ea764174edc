# consul-sidecar: one Makefile, read top to bottom.
# Variables, then all, check, demo, bench, fuzz, install, clean.

VERSION    ?= 0.1.0
PREFIX     ?= /usr/local
CC         ?= cc
PKGS       := libcurl libcjson libmicrohttpd
DEB_PKGS   := build-essential pkg-config libcurl4-openssl-dev libcjson-dev \
              libmicrohttpd-dev check haproxy nginx-light docker-compose curl \
              iproute2 procps socat openssl systemd prometheus cppcheck
# For make fuzz (clang's libFuzzer), make valgrind (CI runs both) and
# make format.
DEV_DEB_PKGS := clang libclang-rt-dev valgrind clang-format

CSTD       := -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE
# snprintf truncation is how strings are bounded here, on purpose:
# -Wno-format-truncation keeps that from failing the build.
WARN       := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wvla -Wno-unused-parameter \
              -Wno-format-truncation -Wmissing-prototypes -Wstrict-prototypes -Wcast-qual
OPT        ?= -O2 -g
ifeq ($(SANITIZE),1)
  OPT      := -O1 -g -fno-omit-frame-pointer
  SAN      := -fsanitize=address,undefined -fno-sanitize-recover=undefined
  BUILD    := build/san
else
  SAN      :=
  BUILD    := build/rel
endif
PKG_CFLAGS  = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS    = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CHECK_LIBS  = $(shell pkg-config --libs check 2>/dev/null)
CFLAGS     += $(CSTD) $(WARN) $(OPT) $(SAN) -I. -DSIDECAR_VERSION='"$(VERSION)"' $(PKG_CFLAGS)
LDFLAGS    += $(SAN)
LDLIBS     += $(PKG_LIBS) -lm -pthread

BIN        := $(BUILD)/bin
OBJ        := $(BUILD)/obj

# The daemon's layers (lib <- consul health proxy <- sidecar). main.c is kept
# out of the core archive so unit tests link everything else.
CORE_SRC   := $(wildcard lib/*.c consul/*.c health/*.c proxy/*.c) \
              $(filter-out sidecar/main.c,$(wildcard sidecar/*.c))
CORE_OBJ   := $(CORE_SRC:%.c=$(OBJ)/%.o)
CORE_LIB   := $(BUILD)/libsidecar.a

# Test doubles: each directory under tests/doubles is one program.
DOUBLES    := consul kong
DOUBLE_BIN := $(DOUBLES:%=$(BIN)/%-double)

# Small programs the integration tests and the demo use (backends).
TOOL_SRC   := $(wildcard tests/tools/*.c)
TOOL_BIN   := $(TOOL_SRC:tests/tools/%.c=$(BIN)/%)

# Fuzz targets (tests/fuzz/fuzz_*.c): `make check` replays their corpus with
# the normal compiler; `make fuzz` fuzzes each with libFuzzer under clang.
FUZZ_NAMES := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
REPLAY_BIN := $(FUZZ_NAMES:%=$(BIN)/fuzz/replay_%)
FUZZ_SECONDS ?= 60

UNIT_SRC   := $(wildcard tests/unit/test_*.c)
UNIT_BIN   := $(UNIT_SRC:tests/unit/%.c=$(BIN)/tests/%)

.PHONY: FORCE all check unit integration lint format demo demo-up demo-down bench bench-fleet fuzz fuzz-replay valgrind \
        install clean deps deps-dev compose-check
.DEFAULT_GOAL := all
# Keep object files make would treat as intermediate (no rebuild churn).
# Only objects: a bare .SECONDARY would also stop make from building a
# missing build/san/bin/X when bin/X is newer, so SANITIZE=1 would run the
# plain binaries.
.PRECIOUS: $(OBJ)/%.o

all: bin/consul-sidecar $(DOUBLE_BIN:$(BIN)/%=bin/%) $(TOOL_BIN:$(BIN)/%=bin/%)

# bin/ always holds the build last asked for (plain or sanitized), so scripts
# and users have one place to look. Compared on every run, not by date: a
# plain build older than the sanitized copy in bin/ must still replace it.
bin/%: $(BIN)/% FORCE
	@mkdir -p bin
	@cmp -s $< $@ || { echo "cp -f $< $@"; cp -f $< $@; }
FORCE:

$(BIN)/consul-sidecar: $(OBJ)/sidecar/main.o $(CORE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(CORE_LIB): $(CORE_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $^

define double_rule
$(1)_SRC := $$(wildcard tests/doubles/$(1)/*.c)
$(1)_OBJ := $$($(1)_SRC:%.c=$$(OBJ)/%.o)
$$(BIN)/$(1)-double: $$($(1)_OBJ) $$(CORE_LIB)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(LDFLAGS) -o $$@ $$($(1)_OBJ) $$(CORE_LIB) $$(LDLIBS)
endef
$(foreach d,$(DOUBLES),$(eval $(call double_rule,$(d))))

$(TOOL_BIN): $(BIN)/%: $(OBJ)/tests/tools/%.o
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BIN)/fuzz/replay_%: $(OBJ)/tests/fuzz/fuzz_%.o $(OBJ)/tests/fuzz/replay.o $(CORE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BIN)/tests/%: $(OBJ)/tests/unit/%.o $(CORE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(CHECK_LIBS) $(LDLIBS)

# Suites that drive an orchestrator against the Consul double start it.
$(BIN)/tests/test_registrar $(BIN)/tests/test_clusterview: | $(BIN)/consul-double

$(OBJ)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# ---- set-up ---------------------------------------------------------------
deps:
	@sh tools/deps.sh $(DEB_PKGS)

deps-dev: deps
	@sh tools/deps.sh $(DEV_DEB_PKGS)

# ---- tests ----------------------------------------------------------------
check: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory lint
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory fuzz-replay
	@$(MAKE) --no-print-directory integration

unit: $(UNIT_BIN)
	@sh tests/run-unit.sh $(UNIT_BIN)

integration: all
	@bash tests/integration/run.sh

fuzz-replay: $(REPLAY_BIN)
	@for t in $(FUZZ_NAMES); do printf '%s: ' "$$t"; $(BIN)/fuzz/replay_$$t tests/fuzz/corpus/$$t || exit 1; done

lint:
	@sh tools/lint.sh

# Lays every C file out by .clang-format (clang-format 14 or later).
format: deps-dev
	@clang-format -i $$(git ls-files '*.c' '*.h')

# Every sidecar of the main scenarios under valgrind memcheck (slow; not in check).
VALGRIND_SCENARIOS ?= t_register t_sync_haproxy t_sync_nginx t_sync_kong t_probe t_drain t_elect
valgrind: deps-dev all
	@for t in $(VALGRIND_SCENARIOS); do VALGRIND=1 bash tests/integration/$$t.sh || exit 1; done

compose-check:
	docker-compose -f compose/docker-compose.yml config -q

# ---- the demo: the whole system on loopback (PROXY=haproxy|kong) ----------
demo: deps
	@$(MAKE) --no-print-directory all
	@PROXY=$(or $(PROXY),haproxy) bash demo/demo.sh run

demo-up: deps
	@$(MAKE) --no-print-directory all
	@PROXY=$(or $(PROXY),haproxy) bash demo/demo.sh up

demo-down:
	@bash demo/demo.sh down

# ---- fuzzing (clang + libFuzzer; not part of check) -------------------------
# New inputs go to build/fuzz/corpus-<target>; a crash leaves crash-* files:
# add each to tests/fuzz/corpus/<target>/ as a regression input.
fuzz: deps-dev
	@mkdir -p build/fuzz
	@for t in $(FUZZ_NAMES); do \
	    echo "fuzz: $$t for $(FUZZ_SECONDS) s"; \
	    clang $(CSTD) -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I. $(PKG_CFLAGS) \
	        -DSIDECAR_VERSION='"$(VERSION)"' -o build/fuzz/$$t tests/fuzz/fuzz_$$t.c \
	        $(CORE_SRC) $(PKG_LIBS) -lm -pthread || exit 1; \
	    mkdir -p build/fuzz/corpus-$$t; \
	    build/fuzz/$$t -max_total_time=$(FUZZ_SECONDS) -max_len=65536 \
	        build/fuzz/corpus-$$t tests/fuzz/corpus/$$t || exit 1; \
	done

# ---- benchmarks (never part of check) -------------------------------------
$(BIN)/bench/%: $(OBJ)/bench/%.o $(CORE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

BENCH_BIN := $(patsubst bench/%.c,$(BIN)/bench/%,$(wildcard bench/*.c))
bench: deps
	@$(MAKE) --no-print-directory all $(BENCH_BIN)
	@BENCH_BIN=$(BIN)/bench bash bench/run.sh

# A fleet of sidecars against one Consul double (FLEET_SIZES, default
# "50 200 500"): bench/results/fleet.md. Its analysis needs python3.
bench-fleet: deps
	@sh tools/deps.sh python3
	@$(MAKE) --no-print-directory all $(BENCH_BIN)
	@BENCH_BIN=$(BIN)/bench bash bench/fleet.sh

# ---- the rest -------------------------------------------------------------
# Debian's places with PREFIX=/usr; the unit's ExecStart follows PREFIX.
UNITDIR    ?= /lib/systemd/system
install: bin/consul-sidecar
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(UNITDIR)
	install -m 0755 bin/consul-sidecar $(DESTDIR)$(PREFIX)/bin/consul-sidecar
	install -m 0644 docs/consul-sidecar.1 $(DESTDIR)$(PREFIX)/share/man/man1/consul-sidecar.1
	sed 's|@BINDIR@|$(PREFIX)/bin|' contrib/systemd/consul-sidecar.service > $(DESTDIR)$(UNITDIR)/consul-sidecar.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/consul-sidecar.service

clean:
	rm -rf build bin
