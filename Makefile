# mailgate — build, run and test.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X mailgate/admin.Version=$(VERSION)
DATA    ?= $(CURDIR)/data
FUZZTIME ?= 10s

.PHONY: all build run test test-deps unit fuzz vet clean

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

# Short runs of every fuzz target (go test -fuzz takes one target at a time).
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$t"; \
	    $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

clean:
	rm -rf bin
