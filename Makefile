# Each target installs what it needs first, so a fresh machine needs nothing else.
#   make demo   one simulated WhatsApp call through the gateway to a SIP echo, audio checked
#   make test   the whole test suite with its real peers (sipp, baresip, headless Chromium)
#   make bench  the per-frame media benchmarks

GO        ?= go
# System packages: libopus for the codec (cgo), sipp and baresip as real SIP peers in tests,
# prometheus for promtool (checks the metrics exposition and the alert rules).
BUILD_PKGS = libopus-dev pkg-config gcc
TEST_PKGS  = $(BUILD_PKGS) sip-tester baresip-core chromium prometheus

.PHONY: demo test bench build deps-build deps-test

demo: deps-build
	$(GO) run ./cmd/wasim demo

# -p 1: one package's tests at a time. The load test (cmd/wasim) and the
# real-peer calls (gateway) time media to the tens of milliseconds; run
# side by side on two cores they starve each other.
# -race everywhere: the real-peer calls and the short load runs pass under
# the race detector's slowdown on two cores (3.5 min against 3 without).
test: deps-test
	$(GO) vet ./...
	$(GO) test -race -p 1 -count=1 -timeout 15m ./...

bench: deps-build
	$(GO) test -run '^$$' -bench . -benchmem ./rtpbridge/...

build: deps-build
	$(GO) build -o wagateway ./cmd/wagateway
	$(GO) build -o wasim ./cmd/wasim

deps-build:
	@./scripts/install-deps.sh $(BUILD_PKGS)

deps-test:
	@./scripts/install-deps.sh $(TEST_PKGS)
