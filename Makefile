# virtbridge — build, test and fuzz. `make test` is what CI runs.
GO        ?= go
BIN       := bin
FUZZTIME  ?= 30s
FUZZEXECS ?= 1000000
PREFIX    ?= /usr/local
DESTDIR   ?=
export PATH := $(PATH):/usr/local/go/bin

CMDS := $(BIN)/virtbridge-hook $(BIN)/virtbridge $(BIN)/virtbridged

.PHONY: all build deps test unit fuzz vet clean package install uninstall demo demo-down bench

all: build

build: $(CMDS)

# The hook is a one-shot process libvirtd waits for: built static (nothing in
# it needs cgo), it skips the dynamic loader (~15% of its run time).
$(BIN)/virtbridge-hook: FORCE
	CGO_ENABLED=0 $(GO) build -o $@ ./cmd/hook

$(BIN)/virtbridge: FORCE
	$(GO) build -o $@ ./cmd/virtbridge

$(BIN)/virtbridged: FORCE
	$(GO) build -o $@ ./cmd/eventd

FORCE:

deps:
	./scripts/deps.sh

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l .)" || { gofmt -l .; echo "gofmt: files above need formatting"; exit 1; }

# The whole suite. As root it installs what it needs and runs the privileged
# tests (network namespaces, real iptables, journald, libvirtd); as a normal
# user those skip with a message.
test: deps build vet
	$(GO) test -count=1 -timeout 40m ./...

# The README's first command. As root on Debian 12: installs the lab's packages,
# builds, then shows a VM on a host broken like the classic how-to reaching the
# outside network, inside namespaces of its own. The lab is torn down at the end,
# on failure and on Ctrl-C. DEMOFLAGS=--keep leaves it up (then: make demo-down).
demo: deps build
	$(GO) build -o $(BIN)/vbdemo ./cmd/vbdemo
	$(BIN)/vbdemo --bin $(BIN) $(DEMOFLAGS)

# Removes what `make demo DEMOFLAGS=--keep` left up.
demo-down:
	$(GO) build -o $(BIN)/vbdemo ./cmd/vbdemo
	$(BIN)/vbdemo --down

# Unit tests only, fast: under -short every test that needs root, network
# namespaces, journald or libvirtd skips, even when run as root.
unit:
	$(GO) test -count=1 -short ./...

# Benchmarks, as root (~6 min): the hook, the daemon and VM start against a
# shell hook and the exec floor; rewrites docs/BENCHMARKS.md. Not part of `make test`.
bench: deps build
	$(GO) run ./bench/cmd/vbbench

# The parsers of untrusted input (hook argv+stdin, config) for $(FUZZEXECS)
# executions each (~2 and ~4 min on one shared core), the others for
# $(FUZZTIME). Not part of `make test`. A crasher is written under the
# package's testdata/fuzz/ and, committed, replayed by every `go test`.
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParseHook$$' -fuzztime $(FUZZEXECS)x -fuzzminimizetime 2s ./internal/events
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZEXECS)x -fuzzminimizetime 2s ./internal/config
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 2s ./internal/store
	$(GO) test -run '^$$' -fuzz '^FuzzParseFields$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 2s ./internal/journal
	$(GO) test -run '^$$' -fuzz '^FuzzAlias$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 2s ./internal/journal
	$(GO) test -run '^$$' -fuzz '^FuzzParseTable$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 2s ./internal/doctor

# dist/*.deb, dist/*.rpm and dist/man/ (nfpm v2.45.2 via `go run` from the Go module proxy).
package: build
	GO="$(GO)" ./packaging/build.sh

# Hosts without packages; DESTDIR only stages files (no hook, no firewall, no systemctl).
install: build
	DESTDIR="$(DESTDIR)" PREFIX="$(PREFIX)" BIN="$(BIN)" ./packaging/install.sh install

uninstall:
	DESTDIR="$(DESTDIR)" PREFIX="$(PREFIX)" ./packaging/install.sh uninstall

clean:
	rm -rf $(BIN) dist
