# tests/fuzz/fuzz.mk — libFuzzer targets for the GGUF and safetensors readers.
# Included from the root Makefile (`-include tests/fuzz/fuzz.mk`); provides
#   make fuzz            (via fuzz-files) build and run each target FUZZ_TIME s
#   make fuzz-files-build  build only
# The targets are compiled with clang straight from the engine sources (not
# liblode.a, which gcc builds without fuzzer instrumentation). Crashes land in
# build-fuzz/ as crash-* files; a crash fails the make run.
FUZZ_CC ?= clang
FUZZ_TIME ?= 60
FUZZ_OUT := build-fuzz
FUZZ_CFLAGS := -std=c11 -g -O1 -Iengine -D_GNU_SOURCE -fno-omit-frame-pointer \
               -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
               $(shell pkg-config --cflags jansson 2>/dev/null)
FUZZ_LIBS := $(shell pkg-config --libs jansson 2>/dev/null) -lm
FUZZ_FILE_SRC := engine/base.c engine/gguf.c engine/safetensors.c

$(FUZZ_OUT)/fuzz_gguf: tests/fuzz/fuzz_gguf.c $(FUZZ_FILE_SRC) engine/lode_gguf.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $< $(FUZZ_FILE_SRC) -o $@ $(FUZZ_LIBS)

$(FUZZ_OUT)/fuzz_safetensors: tests/fuzz/fuzz_safetensors.c $(FUZZ_FILE_SRC) engine/lode_safetensors.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $< $(FUZZ_FILE_SRC) -o $@ $(FUZZ_LIBS)

# The seed generator uses lode's writers; built with ASan only (no fuzzer main).
$(FUZZ_OUT)/gen_seeds: tests/fuzz/gen_seeds.c $(FUZZ_FILE_SRC)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -std=c11 -g -O1 -Iengine -D_GNU_SOURCE -fsanitize=address,undefined \
	  $(shell pkg-config --cflags jansson 2>/dev/null) $< $(FUZZ_FILE_SRC) -o $@ $(FUZZ_LIBS)

fuzz-files-build: $(FUZZ_OUT)/fuzz_gguf $(FUZZ_OUT)/fuzz_safetensors $(FUZZ_OUT)/gen_seeds

# Corpus dirs persist across runs (build-fuzz/corpus-*), seeded fresh each time.
fuzz-files: fuzz-files-build
	@rm -rf $(FUZZ_OUT)/seeds && $(FUZZ_OUT)/gen_seeds $(FUZZ_OUT)/seeds
	@set -e; for t in gguf safetensors; do \
	  mkdir -p $(FUZZ_OUT)/corpus-$$t; \
	  echo "fuzz_$$t: $(FUZZ_TIME) s"; \
	  if ( cd $(FUZZ_OUT) && ASAN_OPTIONS=detect_leaks=1 ./fuzz_$$t -max_total_time=$(FUZZ_TIME) \
	      -max_len=4096 -print_final_stats=1 corpus-$$t seeds/$$t ) >$(FUZZ_OUT)/fuzz_$$t.log 2>&1; then \
	    grep -E '^(Done|stat::(number_of_executed_units|new_units_added|peak_rss_mb))' $(FUZZ_OUT)/fuzz_$$t.log; \
	  else tail -60 $(FUZZ_OUT)/fuzz_$$t.log; exit 1; fi; \
	done

fuzz: fuzz-files

.PHONY: fuzz fuzz-files fuzz-files-build
