# mailgate — build, run and test.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X mailgate/admin.Version=$(VERSION)
DATA    ?= $(CURDIR)/data
# Fuzz budget per target as an execution count: a duration (-fuzztime 10s)
# trips a race in Go 1.26's fuzz coordinator that fails the run with
# "context deadline exceeded" and no crashing input (go.dev/issue/75804).
FUZZTIME ?= 10000x

.PHONY: all build run test test-deps unit fuzz vet soak bench bench-quick image test-image clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/mailgate ./cmd/mailgate

# Start the appliance locally: development profile (SMTP 2525, SMTPS 2465,
# submission 2587, SSH CLI 2222, web 8443), data in ./data.
run: build
	./bin/mailgate -profile dev -data $(DATA) -listen 127.0.0.1

# Install what the tests need (when missing), then run every test.
test: test-deps vet unit fuzz

test-deps:
	./scripts/test-deps.sh

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }

unit:
	$(GO) test -count=1 -timeout 10m ./...

# The long versions of the fault tests (kill -9 under load, full data
# partition, misbehaving next hops, abusive clients): cmd/mailgate/fault_test.go.
SOAKTIME ?= 90m
soak: test-deps
	MAILGATE_SOAK=1 $(GO) test -count=1 -timeout $(SOAKTIME) -run '^TestFault' -v ./cmd/mailgate

# Short runs of every fuzz target (go test -fuzz takes one target at a time).
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$t"; \
	    $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

# Relay benchmark: mailgate in gateway mode against a private Postfix
# relay, smtp-source -> system -> smtp-sink on loopback, plus the memory
# of idle connections and the Go micro-benchmarks of the hot paths. The
# report is printed and saved in bench/results/. Needs root (Postfix).
# Not part of make test. BENCHFLAGS adds options, e.g.
# BENCHFLAGS="-cases 1k-10-plain -systems mailgate".
BENCHFLAGS ?=
bench: test-deps
	$(GO) run ./bench $(BENCHFLAGS)

# A short run (about two minutes): 2,000 messages per pass, four cases.
bench-quick: test-deps
	$(GO) run ./bench -quick $(BENCHFLAGS)

# The appliance images: dist/mailgate-amd64.img (UEFI PCs and VMs) and
# dist/mailgate-rpi.img (Raspberry Pi 4 and 5), with the upgrade files
# dist/mailgate-<target>.upgrade for `execute restore image`. Needs
# Debian's squashfs-tools, e2fsprogs, systemd-boot-efi (installed by
# test-deps). IMAGEFLAGS adds options, e.g. IMAGEFLAGS="-targets amd64".
IMAGEFLAGS ?=
image: test-deps
	$(GO) run ./image/mkimage -out dist -version $(VERSION) $(IMAGEFLAGS)

# Build the amd64 image and boot it in QEMU (software emulation): mail,
# reboot, A/B upgrade. Part of make test (go test ./... runs it too).
test-image: test-deps
	$(GO) test -count=1 -timeout 20m -run 'TestQEMU|TestRaspberryPi|TestReproducible' -v ./image/

clean:
	rm -rf bin dist
