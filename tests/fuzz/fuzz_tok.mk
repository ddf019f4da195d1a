# tests/fuzz/fuzz_tok.mk — libFuzzer target for the tokenizer (clang, built
# from the engine sources it needs). `make fuzz` runs it after the file
# parsers' targets, FUZZ_TIME seconds.
FUZZ_TOK_SRC := engine/base.c engine/gguf.c engine/tok.c engine/tok_encode.c engine/tok_load.c
$(FUZZ_OUT)/fuzz_tok: tests/fuzz/fuzz_tok.c $(FUZZ_TOK_SRC)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(shell pkg-config --cflags libpcre2-8) $< $(FUZZ_TOK_SRC) -o $@ $(FUZZ_LIBS) -lpcre2-8 -lpthread

fuzz-tok: $(FUZZ_OUT)/fuzz_tok
	@mkdir -p $(FUZZ_OUT)/corpus-tok $(FUZZ_OUT)/seeds-tok
	@cp tests/tokenizer/corpus/*.txt $(FUZZ_OUT)/seeds-tok/
	@echo "fuzz_tok: $(FUZZ_TIME) s"
	@if ( ASAN_OPTIONS=detect_leaks=1 LODE_VOCAB_DIR=$${LODE_VOCAB_DIR:-$(CURDIR)/../shared/data/vocab} $(FUZZ_OUT)/fuzz_tok -max_total_time=$(FUZZ_TIME) -max_len=2048 \
	      -print_final_stats=1 $(FUZZ_OUT)/corpus-tok $(FUZZ_OUT)/seeds-tok ) >$(FUZZ_OUT)/fuzz_tok.log 2>&1; then \
	    grep -E '^(Done|stat::(number_of_executed_units|peak_rss_mb))' $(FUZZ_OUT)/fuzz_tok.log; \
	  else tail -60 $(FUZZ_OUT)/fuzz_tok.log; exit 1; fi

fuzz: fuzz-tok
.PHONY: fuzz-tok
