# figment — the two commands a newcomer needs: `make run` and `make test`.
# Both install missing Debian packages first (.ci/install-deps), then build with meson/ninja.

BUILD      ?= build
ASAN_BUILD ?= build-asan
LISTEN     ?= 127.0.0.1:8080

.PHONY: all deps build build-asan run test test-fast test-peers bench clean

all: build

deps:
	@.ci/install-deps

$(BUILD)/build.ninja:
	meson setup $(BUILD) --buildtype=debugoptimized

$(ASAN_BUILD)/build.ninja:
	meson setup $(ASAN_BUILD) --buildtype=debug -Db_sanitize=address,undefined -Db_lundef=false

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

build-asan: deps $(ASAN_BUILD)/build.ninja
	ninja -C $(ASAN_BUILD)

# Starts the demo on http://127.0.0.1:8080 (set OPENAI_API_KEY / OPENAI_BASE_URL first).
run: build
	./$(BUILD)/figment serve --listen $(LISTEN)

# Every test: unit (cmocka) and integration (pytest, real binaries on loopback), on the
# normal build and again under ASan/UBSan. Ends with a line "N passed, N failed".
test: build build-asan test-peers
	/usr/bin/python3 tests/run_all.py --build $(BUILD) --asan-build $(ASAN_BUILD)

# The same without the sanitizer pass, for a quick loop while developing.
test-fast: build test-peers
	/usr/bin/python3 tests/run_all.py --build $(BUILD)

# Third-party peers from npm (an OpenAI-compatible mock); the lock file pins them.
test-peers: deps
	cd tests/npm && npm ci --no-audit --no-fund --loglevel=error

bench: build
	/usr/bin/python3 tests/bench/run_bench.py --build $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
