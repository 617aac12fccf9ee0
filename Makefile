# owl: `make` builds the static binary, `sudo make test` installs what the
# tests need and runs them all (end-to-end tests need root), `make generate`
# recompiles the BPF C (installing clang-14, llvm, libbpf-dev, bpftool).
GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
APT_INSTALL = DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends

.PHONY: build test generate vmlinux deps-generate deps-test bench

build:
	CGO_ENABLED=0 $(GO) build -o owl ./cmd/owl

# OWL_E2E=require makes end-to-end tests fail instead of skipping when they
# cannot run (not root, no BPF); .ci/run sets it.
test: deps-test
	$(GO) vet ./...
	$(GO) test -count=1 ./...

# bpftool lets the SIGKILL test cross-check `bpftool link list`.
deps-test:
	@command -v bpftool >/dev/null || { apt-get update -qq && $(APT_INSTALL) bpftool; }

generate: deps-generate
	$(GO) generate ./...

vmlinux: deps-generate
	bpftool btf dump file /sys/kernel/btf/vmlinux format c > bpf/vmlinux.h

deps-generate:
	@if ! command -v clang-14 >/dev/null || ! command -v llvm-strip >/dev/null || \
	    ! command -v bpftool >/dev/null || [ ! -f /usr/include/bpf/bpf_helpers.h ]; then \
		apt-get update -qq && $(APT_INSTALL) clang-14 llvm libbpf-dev bpftool; \
	fi

bench:
	$(GO) run ./bench/startup
