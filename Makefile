# Each target installs what it needs first, so a fresh machine needs nothing else.
#   make demo   one simulated WhatsApp call through the gateway to a SIP echo, audio checked
#   make test   the whole test suite with its real peers (sipp, baresip, headless Chromium)
#   make bench  the per-frame media benchmarks

GO        ?= go
# System packages: libopus for the codec (cgo), sipp and baresip as real SIP peers in tests.
BUILD_PKGS = libopus-dev pkg-config gcc
TEST_PKGS  = $(BUILD_PKGS) sip-tester baresip-core chromium

.PHONY: demo test bench build deps-build deps-test

demo: deps-build
	$(GO) run ./cmd/wasim demo

# -p 1: one package's tests at a time. The load test (cmd/wasim) and the
# real-peer calls (gateway) time media to the tens of milliseconds; run
# side by side on two cores they starve each other.
# -race over every package but the load generator's: its runs measure the
# gateway's lateness and loss under load, which the race detector's 5-10x
# slowdown of the simulator's own media loop would turn into misses.
RACE_PKGS = $(shell $(GO) list ./... | grep -v '/cmd/wasim$$')
test: deps-test
	$(GO) vet ./...
	$(GO) test -race -p 1 -count=1 -timeout 12m $(RACE_PKGS)
	$(GO) test -p 1 -count=1 -timeout 5m ./cmd/wasim

bench: deps-build
	$(GO) test -run '^$$' -bench . -benchmem ./rtpbridge/...

build: deps-build
	$(GO) build -o wagateway ./cmd/wagateway
	$(GO) build -o wasim ./cmd/wasim

deps-build:
	@./scripts/install-deps.sh $(BUILD_PKGS)

deps-test:
	@./scripts/install-deps.sh $(TEST_PKGS)
