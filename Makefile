# Each target installs what it needs first, so a fresh machine needs nothing else.
#   make demo   one simulated WhatsApp call through the gateway to a SIP echo, audio checked
#   make test   the whole test suite with its real peers (sipp, baresip, headless Chromium)
#   make bench  the per-frame media benchmarks
#   make build  ./wagateway and ./wasim, stamped with the version and commit
#   make image  the container image wagateway:$(VERSION) (and :latest); needs Docker

GO        ?= go
# System packages: libopus for the codec (cgo), sipp and baresip as real SIP peers in tests,
# prometheus for promtool (checks the metrics exposition and the alert rules).
BUILD_PKGS = libopus-dev pkg-config gcc
# docker-compose (Debian's 1.29), caddy and haproxy: the deployment test renders the
# compose files, validates the Caddyfiles and checks the HAProxy example with the
# real programs (no daemon).
# prometheus: its promtool checks the metrics exposition and the alert rules.
# redis-server and haproxy: the cluster's tests run a real store and load balancer.
TEST_PKGS  = $(BUILD_PKGS) sip-tester baresip-core chromium docker-compose caddy prometheus redis-server haproxy

# The build's version (a tag, else the commit) and commit, printed by
# `wagateway version` and exported as wagateway_build_info.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
LDFLAGS  = -X main.version=$(VERSION) -X main.commit=$(COMMIT)
IMAGE   ?= wagateway

.PHONY: demo test bench build image deps-build deps-test

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
	$(GO) build -ldflags "$(LDFLAGS)" -o wagateway ./cmd/wagateway
	$(GO) build -o wasim ./cmd/wasim

# Not run on the development machine (it has no Docker).
image:
	docker build -f docker/Dockerfile --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) \
		-t $(IMAGE):$(VERSION) -t $(IMAGE):latest .

deps-build:
	@./scripts/install-deps.sh $(BUILD_PKGS)

deps-test:
	@./scripts/install-deps.sh $(TEST_PKGS)
