# afd: one non-recursive Makefile.
#   make            build every binary into build/bin/ (gcc; `make CC=clang` for clang)
#   make test       set up deps, build, run unit + integration + oracle tests
#   make asan       build and run the unit tests with ASan+UBSan (into build-asan/)
#   make run        generate the tiny model if needed and run a short generation
#   make bench      build afd-bench
#   make install    copy the built binaries, systemd units and examples (PREFIX, DESTDIR)
# Sources are found by wildcard: a new .c file in a module directory is built without editing
# this file. Files named *_avx512.c / *_vbmi.c / *_amx.c get the matching ISA flags; everything else is
# built for the x86-64-v3 baseline.

CC      ?= gcc
BUILD   ?= build
SAN     ?=
OPT     ?= -O2

PKGS     := jansson libevent libevent_openssl openssl libpcre2-8 libsystemd ucx
CPPFLAGS := -I. -D_GNU_SOURCE $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
CFLAGS   := -std=c11 $(OPT) -g -Wall -Wextra -Werror -march=x86-64-v3 -fno-plt -pthread \
            -Wshadow -Wno-unused-parameter
LDLIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm -lpthread -ldl
TEST_LDLIBS := -lcriterion

ifeq ($(CC),clang)
  CFLAGS += -Wno-unknown-warning-option
endif
ifneq ($(SAN),)
  CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  LDFLAGS += -fsanitize=address,undefined
endif

AVX512_FLAGS := -mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx512bf16 -mfma -mf16c
AMX_FLAGS    := $(AVX512_FLAGS) -mamx-tile -mamx-bf16

# common/ and proto/ go into one archive that every binary and test links.
COMMON_DIRS := common/base common/model common/backend common/backend/cpu common/layers common/net \
               common/text proto
COMMON_SRC  := $(foreach d,$(COMMON_DIRS),$(wildcard $(d)/*.c))
COMMON_OBJ  := $(COMMON_SRC:%.c=$(BUILD)/obj/%.o)
LIBCOMMON   := $(BUILD)/lib/libafd_common.a

BINS :=

# $(1) binary name, $(2) source directories
define BINARY
$(1)_SRC := $$(foreach d,$(2),$$(wildcard $$(d)/*.c))
ifneq ($$($(1)_SRC),)
$(BUILD)/bin/$(1): $$($(1)_SRC:%.c=$(BUILD)/obj/%.o) $(LIBCOMMON)
	@mkdir -p $$(@D)
	$$(CC) $$(LDFLAGS) -o $$@ $$^ $$(LDLIBS)
BINS += $(BUILD)/bin/$(1)
endif
endef

$(eval $(call BINARY,afd-mkmodel,tools/mkmodel))
$(eval $(call BINARY,afd-run,tools/run))
$(eval $(call BINARY,afd-bench,bench))
# afd-bench profile reads its file back with afd-plan's profile reader and fits; the archive
# is repeated after those objects, which the link line puts after it.
$(BUILD)/bin/afd-bench: $(addprefix $(BUILD)/obj/tools/plan/,profile.o jget.o fit.o)
$(BUILD)/bin/afd-bench: LDLIBS := $(LIBCOMMON) $(LDLIBS)
# afd-bench decode drives attnd's pipeline in-process
$(BUILD)/bin/afd-bench: $(BUILD)/lib/libattnd.a
$(eval $(call BINARY,afd-plan,tools/plan))
$(eval $(call BINARY,afdctl,tools/ctl))
$(eval $(call BINARY,afd-tok,tools/tok))
# A daemon directory: everything but main.c goes into build/lib/lib<dir>.a, which its unit
# tests (tests/unit/<dir>/) link too, so they can test the daemon's modules directly.
# $(1) binary name, $(2) directory
define DAEMON
$(1)_LIBSRC := $$(filter-out $(2)/main.c,$$(wildcard $(2)/*.c))
$(BUILD)/lib/lib$(2).a: $$($(1)_LIBSRC:%.c=$(BUILD)/obj/%.o)
	@mkdir -p $$(@D)
	rm -f $$@
	ar rcs $$@ $$^
ifneq ($$(wildcard $(2)/main.c),)
$(BUILD)/bin/$(1): $(BUILD)/obj/$(2)/main.o $(BUILD)/lib/lib$(2).a $(LIBCOMMON)
	@mkdir -p $$(@D)
	$$(CC) $$(LDFLAGS) -o $$@ $$^ $$(LDLIBS)
BINS += $(BUILD)/bin/$(1)
endif
$(BUILD)/tests/unit/$(2)/%: $(BUILD)/obj/tests/unit/$(2)/%.o $(BUILD)/lib/lib$(2).a $(LIBCOMMON)
	@mkdir -p $$(@D)
	$$(CC) $$(LDFLAGS) -o $$@ $$^ $$(LDLIBS) $$(TEST_LDLIBS)
endef

$(eval $(call DAEMON,attnd,attnd))
$(eval $(call DAEMON,ffnd,ffnd))
$(eval $(call DAEMON,afd-router,router))

TEST_SRC  := $(shell find tests/unit -name 'test_*.c' 2>/dev/null | sort)
TEST_BINS := $(TEST_SRC:%.c=$(BUILD)/%)

.PHONY: all test test-unit test-integ asan run bench clean deps tests format
all: $(BINS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(EXTRA_CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/obj/%_avx512.o: EXTRA_CFLAGS = $(AVX512_FLAGS)
$(BUILD)/obj/%_amx.o: EXTRA_CFLAGS = $(AMX_FLAGS)
$(BUILD)/obj/%_vbmi.o: EXTRA_CFLAGS = $(AVX512_FLAGS) -mavx512vbmi

# The numfmt/CUDA bit-identity test compiles cuda_fp8.h's host conversions (plain C) when the
# headers exist; otherwise the test binary holds one skipped test.
CUDA_INC ?= /usr/local/cuda/include
ifneq ($(wildcard $(CUDA_INC)/cuda_fp8.h),)
$(BUILD)/obj/tests/unit/base/test_numfmt_cuda.o: EXTRA_CFLAGS = -DAFD_HAVE_CUDA_HEADERS -isystem $(CUDA_INC)
endif

$(LIBCOMMON): $(COMMON_OBJ)
	@mkdir -p $(@D)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(LIBCOMMON)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(TEST_LDLIBS)

tests: $(TEST_BINS)

deps:
	@deploy/setup-deps.sh

# The README's test command: everything CI runs.
test: deps
	@$(MAKE) --no-print-directory all tests
	@tests/run-unit.sh $(BUILD)
	@tests/run-integ.sh $(BUILD)
	@$(MAKE) --no-print-directory fuzz-smoke

test-unit: all tests
	@tests/run-unit.sh $(BUILD)

asan:
	@$(MAKE) --no-print-directory BUILD=build-asan SAN=1 all tests
	@tests/run-unit.sh build-asan

# make run [PRESET=tiny|mini] [MODEL=DIR] [PORT=8000] [ONCE=1]: the local cluster (two ffnd
# shards, prefill + decode attnds, router), a sample request, then serving until Ctrl-C.
PORT ?= 8000
PRESET ?= tiny
run: deps all
	@deploy/local-cluster.sh --build $(BUILD) --port $(PORT) --preset $(PRESET) \
	    $(if $(MODEL),--model $(MODEL)) $(if $(ONCE),--once)

bench: $(BUILD)/bin/afd-bench

# libFuzzer targets, built only on request (clang): `make fuzz`, then e.g.
#   build-fuzz/fuzz_safetensors -max_total_time=60 tests/fuzz/corpus/safetensors
# `make fuzz-smoke` (part of `make test`) builds them and runs each briefly on its corpus.
FUZZ_BASE := common/base/err.c common/base/alloc.c
FUZZ_safetensors_SRC := common/model/safetensors.c common/model/tensor.c $(FUZZ_BASE)
FUZZ_wire_SRC := proto/wire.c $(FUZZ_BASE)
FUZZ_ctrl_SRC := proto/ctrl.c proto/wire.c $(FUZZ_BASE)
FUZZ_openai_SRC := router/openai_req.c router/openai_resp.c router/stop.c $(FUZZ_BASE)
FUZZ_TARGETS := safetensors $(if $(wildcard proto/wire.c tests/fuzz/fuzz_wire.c),wire) ctrl
FUZZ_TARGETS += openai
build-fuzz/fuzz_openai: $(FUZZ_openai_SRC) router/openai.h router/stop.h
FUZZ_tokenizer_SRC := $(wildcard common/text/*.c) $(FUZZ_BASE)
FUZZ_TARGETS += tokenizer
FUZZ_SECONDS ?= 15
.PHONY: fuzz fuzz-smoke
fuzz: $(FUZZ_TARGETS:%=build-fuzz/fuzz_%)
build-fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(wildcard common/*/*.h proto/*.h) $(wildcard common/*/*.c proto/*.c)
	@mkdir -p $(@D)
	clang $(CPPFLAGS) -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -o $@ \
	    $< $(FUZZ_$*_SRC) $(LDLIBS)
fuzz-smoke: fuzz
	@tests/run-fuzz.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# make install [PREFIX=/usr/local] [DESTDIR=] [UNITDIR=...]: copies what `make` built (it builds
# nothing: run `make` first, as yourself), the systemd units with their paths rewritten to
# PREFIX, the sysusers entry, the example configs and docs/operations.md. Starts and enables
# nothing (docs/operations.md).
PREFIX      ?= /usr/local
BINDIR      ?= $(PREFIX)/bin
UNITDIR     ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
DATADIR     ?= $(PREFIX)/share/afd
DOCDIR      ?= $(PREFIX)/share/doc/afd
.PHONY: install
install:
	@for b in $(BINS); do [ -x "$$b" ] || { echo "install: $$b is not built: run make first" >&2; exit 1; }; done
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR) \
	    $(DESTDIR)$(DATADIR)/examples/cluster $(DESTDIR)$(DOCDIR)
	install -m 0755 $(BINS) $(DESTDIR)$(BINDIR)/
	for u in deploy/systemd/*.service deploy/systemd/*.target; do \
	    sed -e 's|/usr/local/bin/|$(BINDIR)/|g' -e 's|/usr/local/share/doc/afd/|$(DOCDIR)/|g' \
	        "$$u" > "$(DESTDIR)$(UNITDIR)/$${u##*/}" && chmod 0644 "$(DESTDIR)$(UNITDIR)/$${u##*/}" \
	        || exit 1; \
	done
	install -m 0644 deploy/systemd/afd.sysusers $(DESTDIR)$(SYSUSERSDIR)/afd.conf
	install -m 0644 deploy/examples/*.json $(DESTDIR)$(DATADIR)/examples/
	install -m 0644 deploy/examples/cluster/* $(DESTDIR)$(DATADIR)/examples/cluster/
	install -m 0644 docs/operations.md $(DESTDIR)$(DOCDIR)/

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan build-fuzz

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
