# lode — root Makefile.
#   make deps    install Debian + npm dependencies (idempotent)
#   make         build build/lode (+ the CUDA backend when nvcc is present)
#   make test    deps + build + every test, then the ASan/UBSan build and suite
#   make bench   benchmarks (lode next to llama.cpp, same run)
#   make san     sanitizer build in build-san/
#   make fuzz    short fuzz runs of the file/tokenizer parsers (clang libFuzzer)
#   LODE_PGO=0   no profile-guided build of the tree-sitter grammars and runtime
#                (default 1 with gcc: +35-50 s on a clean build, ~3% faster indexing)
#   LODE_LTO=0   no link-time optimisation of the runtime, allocator and walker
.DEFAULT_GOAL := all
SHELL := /bin/bash

NPROC := $(shell nproc 2>/dev/null || echo 2)
SAN ?= 0
ifeq ($(SAN),1)
  BUILD ?= build-san
  SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
  OPT ?= -O1 -g
else
  BUILD ?= build
  SANFLAGS :=
  OPT ?= -O2 -g
endif

CC ?= cc
ifeq ($(origin CC),default)
  CC := gcc
endif
PKGS := jansson libuv libpcre2-8
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
TS_CFLAGS := $(shell pkg-config --cflags tree-sitter 2>/dev/null)
# Debian's libtree-sitter-dev ships a static archive next to the .so: link it
# when present (parse + query calls cross no PLT; ~8% faster indexing).
TS_LIBDIR := $(shell pkg-config --variable=libdir tree-sitter 2>/dev/null)
TS_STATIC := $(wildcard $(TS_LIBDIR)/libtree-sitter.a)
TS_LIBS := $(if $(TS_STATIC),$(TS_STATIC),$(shell pkg-config --libs tree-sitter 2>/dev/null))
# Better still: Debian's own source of that library (tools/deps.sh fetches it
# with `apt-get source` into TS_SRC), compiled as one unit (lib/src/lib.c,
# TS_LIB_OPT: -O3, and NDEBUG, since Debian's build keeps the asserts) into
# libgrammars.a. The archive (or the .so) stays the fallback without it.
TS_SRC ?= build/tree-sitter-src
TS_LIB_C := $(wildcard $(TS_SRC)/lib/src/lib.c)
ifneq ($(TS_LIB_C),)
  TS_LIBS :=
endif

WARN := -Wall -Wextra -Wshadow -Wno-unused-parameter -Wstrict-prototypes -Wmissing-prototypes
CPPFLAGS += -Iengine -Idaemon -Ilsp -Ikernels -D_GNU_SOURCE
CFLAGS := -std=c11 $(OPT) -pthread $(WARN) $(SANFLAGS) $(PKG_CFLAGS) $(TS_CFLAGS) $(EXTRA_CFLAGS)
LDFLAGS += $(SANFLAGS) -pthread
LDLIBS := $(PKG_LIBS) $(TS_LIBS) -lm

# ---- CUDA (optional) -------------------------------------------------------
CUDA_HOME ?= /usr/local/cuda
# Prefer the toolkit's own nvcc; a wrapper on PATH (e.g. /usr/local/bin/nvcc)
# says nothing about where the libraries live, so find those separately.
NVCC ?= $(firstword $(wildcard $(CUDA_HOME)/bin/nvcc) $(shell command -v nvcc 2>/dev/null))
CUDA_ARCHS ?= 80 89 90
ifeq ($(NO_CUDA),1)
  NVCC :=
endif
CU_SRC := $(wildcard kernels/*.cu)
ifneq ($(strip $(NVCC)),)
ifneq ($(strip $(CU_SRC)),)
  # The toolkit root as nvcc itself reports it (follows wrappers and symlinks).
  CUDA_TOP := $(shell $(NVCC) --dryrun -x cu -c /dev/null -o /dev/null 2>&1 | sed -n 's/^\#\$$ TOP=//p' | head -1)
  CUDA_LIBDIR := $(firstword $(patsubst %/libcublas.so,%,$(wildcard \
      $(CUDA_TOP)/lib64/libcublas.so $(CUDA_TOP)/lib/libcublas.so $(CUDA_TOP)/targets/x86_64-linux/lib/libcublas.so \
      $(CUDA_HOME)/lib64/libcublas.so $(CUDA_HOME)/lib/libcublas.so $(CUDA_HOME)/targets/x86_64-linux/lib/libcublas.so)))
  ifneq ($(strip $(CUDA_LIBDIR)),)
    CPPFLAGS += -DLODE_HAVE_CUDA
    CU_OBJ := $(CU_SRC:%.cu=$(BUILD)/%.o)
    LDLIBS += -L$(CUDA_LIBDIR) -Wl,-rpath,$(CUDA_LIBDIR) -lcublas -lcudart -lstdc++
    HAVE_CUDA := 1
  else
    CUDA_MISSING := nvcc at $(NVCC) but no libcublas.so next to it
  endif
endif
endif
GENCODE := $(foreach a,$(CUDA_ARCHS),-gencode arch=compute_$(a),code=sm_$(a))
NVCCFLAGS ?= -O3 -std=c++17 $(GENCODE) -Xcompiler -fPIC -Iengine -Ikernels

# ---- tree-sitter grammars (grammars/, fetched by `make deps`) -------------
# parser.c/scanner.c of each pinned npm grammar, compiled once with
# GRAMMAR_OPT -w and no sanitizers (shared by build/ and build-san/), plus the
# embedded query files (and the tree-sitter runtime when TS_SRC has it), into
# one archive linked into lode and the tests.
GRAMMAR_NM := grammars/node_modules
# -O3 measured no faster than -O2 for the generated parsers (docs/context.md).
GRAMMAR_OPT ?= -O2
# -fno-semantic-interposition: -fPIC alone makes gcc treat every exported
# runtime function as replaceable at link time and never inline one into
# another (ts_language_table_entry, ts_subtree_*, the stack); nothing
# interposes them (10% less CPU on the index benchmark, docs/context.md).
TS_LIB_OPT ?= -O3 -DNDEBUG -fno-semantic-interposition
# The runtime's allocations go to lsp/ts_alloc.c (size-class free lists per
# thread; plain malloc in ASan builds), compiled per build folder and linked
# after the archive. LODE_TS_ALLOC=0: tree-sitter's own malloc calls.
LODE_TS_ALLOC ?= 1
TS_ALLOC_DEFS := $(if $(filter 1,$(LODE_TS_ALLOC)),-include lsp/lode_ts_alloc.h -Dts_malloc=lode_ts_malloc \
    -Dts_calloc=lode_ts_calloc -Dts_realloc=lode_ts_realloc -Dts_free=lode_ts_free)
TS_ALLOC_OBJ := $(BUILD)/lsp/ts_alloc.o
GRAMMAR_OUT ?= build/grammars
# Profile-guided optimisation of the runtime and the grammars (LODE_PGO=1,
# the default, gcc only): the same objects compiled with -fprofile-generate
# into PGO_DIR/gen, linked into tools/pgo_train.c, which parses and walks up
# to PGO_TRAIN_FILES files per language of PGO_CORPUS (sources present after
# `make deps`; missing roots are skipped); its .gcda files are copied next to
# the final objects, which are compiled with -fprofile-use. The profile lives
# under build/ only and is redone only when a grammar, the runtime or the
# trainer changes. Without gcc (or -fprofile-partial-training), with
# LODE_PGO=0, or when the training fails: the plain build.
LODE_PGO ?= 1
PGO_GCC := $(shell $(CC) -v 2>&1 | grep -q '^gcc version' && \
    $(CC) -fprofile-partial-training -E -x c /dev/null -o /dev/null 2>/dev/null && echo 1)
PGO := $(if $(filter 1,$(LODE_PGO)),$(PGO_GCC))
PGO_DIR := $(GRAMMAR_OUT)/pgo
PGO_STAMP := $(PGO_DIR)/trained
PGO_GEN := -fprofile-generate -fprofile-update=single
PGO_USE := -fprofile-use -fprofile-partial-training -Wno-coverage-mismatch
PGO_CORPUS ?= engine lsp daemon kernels tools tests grammars editors $(TS_SRC) /usr/include $(wildcard /usr/lib/python3.*)
PGO_TRAIN_FILES ?= 300
# In a recipe: PGO_USE when the training succeeded (the stamp says "ok").
PGO_FLAGS = $(if $(PGO),$$(test "$$(cat $(PGO_STAMP) 2>/dev/null)" = ok && echo '$(PGO_USE)'))
# Link-time optimisation across the runtime, its allocator (lsp/ts_alloc.c)
# and the index's parse-and-walk code (lsp/syntax.c, lsp/syntax_walk.c):
# LODE_LTO=1, the default, with gcc, the runtime built from TS_SRC and a
# linker that takes -flto. Those objects are compiled -flto
# -ffat-lto-objects, so every link can use them; only the links that index
# (lode, bench_index, bench_context) run the LTO step and get the cross-unit
# inlining (each such link recompiles the runtime: ~6 s): the walker and
# the parser's ts_malloc/ts_free calls inline the cursor, node and
# free-list fast paths, and whole-program visibility lets the runtime inline
# its own one-caller functions (bench_index: ~9% more files per CPU-second).
# The runtime object keeps its PGO profile. Other links (tests, SAN=1) take
# the objects' ordinary code. LODE_LTO=0: no LTO.
LODE_LTO ?= 1
LTO_GCC := $(shell $(CC) -v 2>&1 | grep -q '^gcc version' && \
    echo 'int main(void) { return 0; }' | $(CC) -flto -ffat-lto-objects -x c - -o /dev/null 2>/dev/null && echo 1)
# The runtime object is shared by build/ and build-san/: its LTO does not depend on SAN.
TS_LTO := $(if $(filter 1,$(LODE_LTO)),$(if $(TS_LIB_C),$(LTO_GCC)))
LTO := $(if $(filter 1,$(SAN)),,$(TS_LTO))
LTO_CFLAGS := -flto -ffat-lto-objects
LTO_OBJ := $(BUILD)/lsp/syntax.o $(BUILD)/lsp/syntax_walk.o $(TS_ALLOC_OBJ)
LTO_STAMP := $(BUILD)/lsp/.lto$(if $(LTO),1,0)
# Links with fat LTO objects in them run the LTO step unless told -fno-lto
# (gcc's linker plugin sees the bytecode): only the links named below do it.
LTO_LINK = $(if $(TS_LTO),-fno-lto)
LDFLAGS += $(LTO_LINK)
# Stamps named after the flags: changing them rebuilds the objects.
GRAMMAR_STAMP := $(GRAMMAR_OUT)/.opt$(subst $() ,,$(GRAMMAR_OPT))$(if $(PGO),-pgo)
TS_LIB_STAMP := $(GRAMMAR_OUT)/.tsopt$(subst $() ,,$(TS_LIB_OPT))$(if $(PGO),-pgo)$(if $(TS_ALLOC_DEFS),-alloc)$(if $(TS_LTO),-lto)
GRAMMAR_SRC := $(sort $(wildcard $(GRAMMAR_NM)/tree-sitter-*/src/parser.c $(GRAMMAR_NM)/tree-sitter-*/src/scanner.c \
    $(GRAMMAR_NM)/tree-sitter-*/*/src/parser.c $(GRAMMAR_NM)/tree-sitter-*/*/src/scanner.c \
    $(GRAMMAR_NM)/@tree-sitter-grammars/tree-sitter-*/src/parser.c $(GRAMMAR_NM)/@tree-sitter-grammars/tree-sitter-*/src/scanner.c))
GRAMMAR_OBJ := $(GRAMMAR_SRC:$(GRAMMAR_NM)/%.c=$(GRAMMAR_OUT)/%.o) $(GRAMMAR_OUT)/queries.o \
    $(if $(TS_LIB_C),$(GRAMMAR_OUT)/tree-sitter-lib.o)
GRAMMAR_LIB := $(GRAMMAR_OUT)/libgrammars.a
PGO_GEN_OBJ := $(patsubst $(GRAMMAR_OUT)/%,$(PGO_DIR)/gen/%,$(filter-out $(GRAMMAR_OUT)/queries.o,$(GRAMMAR_OBJ)))
GRAMMAR_QUERIES := $(sort $(wildcard $(GRAMMAR_NM)/*/queries/*.scm $(GRAMMAR_NM)/*/*/queries/*.scm grammars/queries/*/*.scm))
LDLIBS := $(GRAMMAR_LIB) $(TS_ALLOC_OBJ) $(LDLIBS)

# ---- sources ----------------------------------------------------------------
LIB_SRC := $(wildcard engine/*.c) $(filter-out lsp/ts_alloc.c,$(wildcard lsp/*.c)) $(filter-out daemon/main.c,$(wildcard daemon/*.c)) \
           $(wildcard kernels/*.c)
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o) $(CU_OBJ)
TEST_SRC := $(wildcard tests/unit/test_*.c)
TEST_BIN := $(TEST_SRC:tests/unit/%.c=$(BUILD)/tests/%)

all: features $(BUILD)/lode

features:
	@command -v $(CC) >/dev/null && echo "✓ C compiler: $(CC)" || echo "✗ C compiler $(CC) not found"
	@pkg-config --exists $(PKGS) && echo "✓ jansson, libuv, pcre2" || echo "✗ jansson/libuv/pcre2 missing: run 'make deps'"
	@pkg-config --exists tree-sitter && echo "✓ tree-sitter" || echo "✗ tree-sitter missing: run 'make deps'"
	@if [ -n "$(TS_LIB_C)" ]; then echo "✓ tree-sitter runtime built from Debian's source ($(TS_SRC), $(TS_LIB_OPT))"; else echo "✗ tree-sitter source not in $(TS_SRC) ('make deps' fetches it): linking $(or $(TS_LIBS),the library)"; fi
	@if [ -n "$(LTO)" ]; then echo "✓ link-time optimisation of the runtime, its allocator and the walker (LODE_LTO=1)"; elif [ "$(LODE_LTO)" != 1 ]; then echo "✗ link-time optimisation off (LODE_LTO=$(LODE_LTO))"; elif [ "$(SAN)" = 1 ]; then echo "✗ link-time optimisation off in the sanitizer build"; else echo "✗ link-time optimisation needs gcc, -flto and the runtime's source ($(CC)): plain build"; fi
	@if [ -n "$(PGO)" ]; then echo "✓ profile-guided build of the grammars and runtime (LODE_PGO=1, $(PGO_DIR))"; elif [ "$(LODE_PGO)" != 1 ]; then echo "✗ profile-guided build off (LODE_PGO=$(LODE_PGO))"; else echo "✗ profile-guided build needs gcc with -fprofile-partial-training ($(CC)): plain build"; fi
	@test -d $(GRAMMAR_NM) && echo "✓ tree-sitter grammars ($(GRAMMAR_NM))" || echo "✗ $(GRAMMAR_NM) missing (tree-sitter grammars): run 'make deps'"
	@if [ -n "$(HAVE_CUDA)" ]; then echo "✓ nvcc: $(NVCC) (CUDA backend, sm $(CUDA_ARCHS))"; elif [ -n "$(CUDA_MISSING)" ]; then echo "✗ CUDA: $(CUDA_MISSING): CPU-only build"; else echo "✗ nvcc not found: CPU-only build"; fi
	@grep -q avx512f /proc/cpuinfo && echo "✓ CPU AVX-512 (kernels dispatch at run time)" || echo "✗ CPU AVX-512 not present (AVX2/scalar paths used)"
	@grep -q amx_tile /proc/cpuinfo && echo "✓ CPU AMX" || echo "✗ CPU AMX not present"
	@command -v node >/dev/null && echo "✓ node (llama.cpp comparison via node-llama-cpp)" || echo "✗ node missing: llama.cpp comparisons skipped"

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -DLODE_HAVE_CUDA -MMD -MP -MF $(@:.o=.d) -c $< -o $@

$(GRAMMAR_NM)/tree-sitter-c/package.json:
	@echo "✗ grammars/node_modules is missing (tree-sitter grammars): run 'make deps' (npm ci in grammars/)" >&2; exit 1

$(GRAMMAR_STAMP) $(TS_LIB_STAMP):
	@mkdir -p $(dir $@)
	@rm -f $(GRAMMAR_OUT)/$(firstword $(subst -, ,$(notdir $@)))*
	@touch $@

GRAMMAR_CC = $(CC) -std=c11 $(GRAMMAR_OPT) -g0 -w -fPIC -I$(dir $<)
TS_LIB_CC = $(CC) -std=gnu11 $(TS_LIB_OPT) -g0 -w -fPIC -I$(TS_SRC)/lib/include -I$(TS_SRC)/lib/src $(TS_ALLOC_DEFS)

$(GRAMMAR_OUT)/%.o: $(GRAMMAR_NM)/%.c $(GRAMMAR_STAMP) $(if $(PGO),$(PGO_STAMP)) | $(GRAMMAR_NM)/tree-sitter-c/package.json
	@mkdir -p $(dir $@)
	$(GRAMMAR_CC) $(PGO_FLAGS) -c $< -o $@

$(GRAMMAR_OUT)/tree-sitter-lib.o: $(TS_LIB_C) $(TS_LIB_STAMP) lsp/lode_ts_alloc.h $(if $(PGO),$(PGO_STAMP))
	@mkdir -p $(dir $@)
	$(TS_LIB_CC) $(PGO_FLAGS) $(if $(TS_LTO),$(LTO_CFLAGS)) -c $< -o $@

# The LTO objects of the build folder (their flags' stamp, as above), and the
# links that use them (private: not passed on to the prerequisites).
$(LTO_STAMP):
	@mkdir -p $(dir $@)
	@rm -f $(BUILD)/lsp/.lto*
	@touch $@
$(LTO_OBJ): $(LTO_STAMP)
ifneq ($(LTO),)
$(LTO_OBJ): private CFLAGS += $(LTO_CFLAGS)
$(BUILD)/lode $(BUILD)/bench_index $(BUILD)/bench_context: private LTO_LINK = -flto=auto
endif

# The instrumented objects, the trainer, and the training run. A failed
# training leaves "failed" in the stamp (no profiles: the plain build); delete
# the stamp to try again.
$(PGO_DIR)/gen/%.o: $(GRAMMAR_NM)/%.c $(GRAMMAR_STAMP) | $(GRAMMAR_NM)/tree-sitter-c/package.json
	@mkdir -p $(dir $@)
	$(GRAMMAR_CC) $(PGO_GEN) -c $< -o $@

$(PGO_DIR)/gen/tree-sitter-lib.o: $(TS_LIB_C) $(TS_LIB_STAMP) lsp/lode_ts_alloc.h
	@mkdir -p $(dir $@)
	$(TS_LIB_CC) $(PGO_GEN) -c $< -o $@

$(PGO_DIR)/pgo_train: tools/pgo_train.c lsp/ts_alloc.c $(PGO_GEN_OBJ) lsp/ts_grammars.h
	$(CC) -std=c11 -O2 -g0 -pthread -D_GNU_SOURCE $(if $(TS_LIB_C),-I$(TS_SRC)/lib/include,$(TS_CFLAGS)) $(filter-out %.h,$^) \
	  $(if $(TS_LIB_C),,$(TS_LIBS)) -lgcov -o $@

$(PGO_STAMP): $(PGO_DIR)/pgo_train
	@find $(PGO_DIR)/gen -name '*.gcda' -delete; \
	for o in $(GRAMMAR_OBJ:.o=.gcda); do rm -f $$o; done; \
	t0=$$(date +%s); \
	if timeout 300 $< -n $(PGO_TRAIN_FILES) $(PGO_CORPUS); then \
	  for o in $(PGO_GEN_OBJ:.o=); do \
	    d=$(GRAMMAR_OUT)/$${o#$(PGO_DIR)/gen/}.gcda; \
	    if [ -f $$o.gcda ]; then mkdir -p $$(dirname $$d) && cp $$o.gcda $$d; fi; \
	  done; echo ok >$@; \
	  echo "✓ PGO training: $$(( $$(date +%s) - t0 )) s"; \
	else echo failed >$@; echo "✗ PGO training failed: the grammars and runtime are built without profiles" >&2; fi

$(GRAMMAR_OUT)/queries.c: grammars/embed_queries.py $(GRAMMAR_QUERIES) | $(GRAMMAR_NM)/tree-sitter-c/package.json
	@mkdir -p $(dir $@)
	/usr/bin/python3 grammars/embed_queries.py $(GRAMMAR_NM) grammars/queries $@

$(GRAMMAR_OUT)/queries.o: $(GRAMMAR_OUT)/queries.c
	$(CC) -std=c11 -O1 -g0 -w -c $< -o $@

$(GRAMMAR_LIB): $(GRAMMAR_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/lode $(TEST_BIN): $(GRAMMAR_LIB) $(TS_ALLOC_OBJ)

$(BUILD)/liblode.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/lode: $(BUILD)/daemon/main.o $(BUILD)/liblode.a
	$(CC) $(LDFLAGS) $(filter-out $(TS_ALLOC_OBJ),$^) -o $@ $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/liblode.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -Itests/unit $< $(BUILD)/liblode.a -o $@ $(LDFLAGS) $(LDLIBS) -lcriterion

tests: $(BUILD)/lode $(TEST_BIN)

$(BUILD)/bench_quant: tests/bench/bench_quant.c $(BUILD)/liblode.a $(TS_ALLOC_OBJ)
	$(CC) $(CPPFLAGS) $(CFLAGS) $< $(BUILD)/liblode.a -o $@ $(LDFLAGS) $(LDLIBS)

$(BUILD)/bench_index: tests/bench/bench_index.c $(BUILD)/liblode.a $(GRAMMAR_LIB) $(TS_ALLOC_OBJ)
	$(CC) $(CPPFLAGS) $(CFLAGS) $< $(BUILD)/liblode.a -o $@ $(LDFLAGS) $(LDLIBS)

deps:
	@tools/deps.sh

test: deps
	@$(MAKE) --no-print-directory -j$(NPROC) all tests
	@tools/run-tests.sh $(BUILD)
	@$(MAKE) --no-print-directory -j$(NPROC) SAN=1 NO_CUDA=1 all tests
	@LODE_SAN=1 tools/run-tests.sh build-san

san:
	@$(MAKE) --no-print-directory -j$(NPROC) SAN=1 NO_CUDA=1 all tests

bench: deps
	@$(MAKE) --no-print-directory all $(BUILD)/bench_index $(BUILD)/bench_context $(BUILD)/bench_quant
	@tools/bench.sh $(BUILD)

clean:
	rm -rf build build-san

.PHONY: all features deps test tests san bench clean
-include $(LIB_OBJ:.o=.d) $(TS_ALLOC_OBJ:.o=.d) $(BUILD)/daemon/main.d
-include tests/fuzz/fuzz.mk
-include tests/fuzz/fuzz_tok.mk

# Long soak of the daemon (CI runs a short one): 32 clients x 300 requests.
soak: all
	@LODE_BIN=$(CURDIR)/$(BUILD)/lode LODE_SOAK_CLIENTS=$${LODE_SOAK_CLIENTS:-32} \
	  LODE_SOAK_REQUESTS=$${LODE_SOAK_REQUESTS:-300} pytest-3 -q tests/py/test_daemon_soak.py
.PHONY: soak

# Recall of the project context on real code (Debian source packages fetched
# into ~/.cache/lode/eval, never into git): docs/context.md "## Evaluation".
$(BUILD)/bench_context: tests/bench/bench_context.c $(BUILD)/liblode.a $(GRAMMAR_LIB) $(TS_ALLOC_OBJ)
	$(CC) $(CPPFLAGS) $(CFLAGS) $< $(BUILD)/liblode.a -o $@ $(LDFLAGS) $(LDLIBS)
$(BUILD)/eval_context: tools/eval_context.c $(BUILD)/liblode.a $(GRAMMAR_LIB) $(TS_ALLOC_OBJ)
	$(CC) $(CPPFLAGS) $(CFLAGS) $< $(BUILD)/liblode.a -o $@ $(LDFLAGS) $(LDLIBS)
eval-context: all $(BUILD)/eval_context
	@tools/eval-context.sh $(BUILD)
.PHONY: eval-context
