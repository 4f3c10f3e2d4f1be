# DaTtSs - the two commands:
#   make run    install what is missing, build, and run dattssd on embedded defaults (dashboard on http://127.0.0.1:8080/)
#   make test   install what is missing, build (plain, ASan+UBSan, TSan, fuzz) and run every test tier
# Other targets: build (programs in build/bin/), bench, bench-targets (every performance target, ~4 min), fuzz, clean.
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
BUILD ?= build
FUZZ_SECONDS ?= 30
RUN_ARGS ?=

.PHONY: all build run test deps deps-test test-plain test-browser test-asan test-tsan fuzz bench bench-targets clean

all: build

deps:
	@scripts/install-deps.sh run

deps-test:
	@scripts/install-deps.sh test

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_ARGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

run: build
	$(BUILD)/bin/dattssd --data-dir ./data $(RUN_ARGS)

# Each tier in its own build directory so sanitizer flags never mix.
test-plain: deps-test
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDTS_WERROR=ON >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)
	cd $(BUILD) && ctest --output-on-failure -L 'unit|integration'

# The dashboard: its logic under node's test runner, then headless Chromium against the real dattssd (tests/browser/);
# screenshots and the daemon's log in $(BUILD)/screenshots/.
test-browser: deps-test
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDTS_WERROR=ON >/dev/null
	@cmake --build $(BUILD) -j $(JOBS) --target dattssd dattss_hello
	tests/browser/run.sh $(BUILD)

test-asan: deps-test
	@cmake -S . -B $(BUILD)-asan -DCMAKE_BUILD_TYPE=Debug -DDTS_SANITIZE=address -DDTS_WERROR=ON >/dev/null
	@cmake --build $(BUILD)-asan -j $(JOBS)
	cd $(BUILD)-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ctest --output-on-failure -L 'unit|integration'

test-tsan: deps-test
	@cmake -S . -B $(BUILD)-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDTS_SANITIZE=thread -DDTS_WERROR=ON >/dev/null
	@cmake --build $(BUILD)-tsan -j $(JOBS) --target stress_pipeline
	cd $(BUILD)-tsan && TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$(CURDIR)/tests/stress/tsan.supp" ctest --output-on-failure -L stress

fuzz: deps-test
	@CC=clang cmake -S . -B $(BUILD)-fuzz -DCMAKE_BUILD_TYPE=Debug -DDTS_FUZZ=ON -DDTS_SANITIZE=address \
		-DDTS_WERROR=ON >/dev/null
	@cmake --build $(BUILD)-fuzz -j $(JOBS) --target fuzz_statsd fuzz_dattss fuzz_sketch_decode fuzz_dpdk_parse fuzz_native \
		fuzz_put_agg fuzz_alert_rule fuzz_storage fuzz_burst
	@for f in $(BUILD)-fuzz/bin/fuzz_*; do \
		n=$$(basename $$f); c=tests/fuzz/corpus/$${n#fuzz_}; \
		echo "fuzz: $$n for $(FUZZ_SECONDS)s (seeds: $$c)"; \
		mkdir -p $(BUILD)-fuzz/corpus/$$n; \
		$$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 $(BUILD)-fuzz/corpus/$$n $$c 2>$(BUILD)-fuzz/$$n.log \
			|| { tail -50 $(BUILD)-fuzz/$$n.log; exit 1; }; \
		grep -E 'stat::number_of_executed_units' $(BUILD)-fuzz/$$n.log; \
	done

test: test-plain test-browser test-asan test-tsan fuzz
	@echo "make test: all tiers passed"

bench: build
	bench/run-e2e.sh

# The benchmark of each performance target of the engine issue, with the verdict (docs/performance.md).
bench-targets: build
	bench/targets.sh --build-dir $(BUILD)

clean:
	rm -rf $(BUILD) $(BUILD)-asan $(BUILD)-tsan $(BUILD)-fuzz
