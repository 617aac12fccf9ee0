# owl: `make` builds the static binary, `sudo make test` installs what the
# tests need and runs them all (end-to-end tests need root), `make generate`
# recompiles the BPF C (installing clang-14, llvm, libbpf-dev, bpftool), `make
# man` writes the man pages into ./man.
GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
APT_INSTALL = DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends

.PHONY: build test generate vmlinux deps-generate deps-test bench man image soak fuzz vmtest

# Every fuzz target, as PACKAGE:TARGET:COUNT: make test runs each for COUNT
# inputs beyond its seeds (a few seconds), make fuzz and make soak for
# FUZZTIME each. Crashers go to the package's testdata/fuzz/TARGET, and
# committed there they are regression inputs of every go test.
FUZZ = ./internal/syms:FuzzPerfMap:200000 ./internal/syms:FuzzKallsyms:200000 \
	./internal/syms:FuzzStartTime:200000 ./internal/syms:FuzzFuncs:50000 \
	./internal/kbtf:FuzzOffsets:200000 ./internal/uprobe:FuzzParse:100000 \
	./internal/uprobe:FuzzLdCache:100000 ./internal/uprobe:FuzzGoMinor:100000 \
	./internal/uprobe:FuzzDwarfGoid:20000 ./internal/uprobe:FuzzGoEntry:50000 \
	./internal/tools/trace:FuzzTraceSpec:100000 \
	./internal/usdt:FuzzNotes:100000 ./internal/usdt:FuzzArgs:100000 \
	./internal/usdt:FuzzRead:50000 ./internal/tools/usdt:FuzzFormat:100000 \
	./internal/tools/usdt:FuzzProbe:100000 ./internal/pyframes:FuzzPythonLayout:100000
FUZZTIME ?= 10m
# make soak: every streaming tool at once under a mixed workload for
# SOAK_DURATION (test/soak), then every fuzz target for FUZZTIME.
SOAK_DURATION ?= 10m

# -buildvcs=auto records the commit for `owl --version` (a GOFLAGS of
# -buildvcs=false would leave it out); outside a git checkout it records none.
# grpcnotrace leaves gRPC's golang.org/x/net/trace out (and html/template
# with it): the agent's gRPC exporter never enables it, and every owl
# command would pay for its package initialisation and 6 MB of binary.
# Symbols are kept (no -ldflags=-s -w): .symtab and DWARF are not in the
# loaded segments, so stripping them saves no page fault or start-up time,
# only file size (29 → 21 MB), and owl stays readable by perf and debuggers.
TAGS = grpcnotrace
build:
	CGO_ENABLED=0 $(GO) build -buildvcs=auto -tags $(TAGS) -o owl ./cmd/owl

# The OCI image (scratch + the static binary) as an OCI layout in
# bin/image, built without a container daemon (go-containerregistry):
# skopeo copy oci:bin/image:latest docker://REGISTRY/owl:TAG pushes it.
image: build
	$(GO) run ./deploy/image -bin owl -out bin/image -arch $$($(GO) env GOARCH)

# Man pages (section 8), one per tool with its examples, generated from the
# commands into ./man (man -l man/owl-tcpconnect.8). -tags man links in
# cobra's doc generator, which the release binary does without.
man:
	CGO_ENABLED=0 $(GO) build -buildvcs=auto -tags man,$(TAGS) -o bin/owl-man ./cmd/owl
	rm -rf man
	bin/owl-man man man

# OWL_E2E=require makes end-to-end tests fail instead of skipping when they
# cannot run (not root, no BPF); .ci/run sets it.
# The fuzzers also run beyond their seed corpus, ~10 s each, for a count of
# inputs: a duration races Go 1.26's fuzz coordinator at its deadline
# (golang/go#75804, a spurious "context deadline exceeded").
# arm64: the static binary must build for it too (BPF objects for both
# architectures are committed).
test: deps-test
	$(GO) vet ./...
	GOARCH=arm64 CGO_ENABLED=0 $(GO) build -o /dev/null ./cmd/owl
	GO=$(GO) test/gotest.sh -count=1 ./...
	$(GO) run ./bench -smoke # every bench section once, tiny: counts checked, no time asserted
	@for f in $(FUZZ); do set -- $$(echo $$f | tr : ' '); \
		echo "$(GO) test -run '^$$' -fuzz '^$$2$$' -fuzztime $${3}x $$1"; \
		$(GO) test -run '^$$' -fuzz "^$$2\$$" -fuzztime $${3}x -fuzzminimizetime 100x $$1 || exit 1; done

# What the tests need, as FILE:PACKAGE pairs: a package is installed (with
# one apt-get for all) when its file is missing. bpftool cross-checks
# `bpftool link list`; gcc/g++/rustc build the C, C++ and Rust target programs; su
# (util-linux) and login are real PAM programs; bpftrace and libbpf-tools are
# the side-by-side peers; sys/sdt.h builds the USDT test program; pamtester
# types passwords, tmux types commands into bash (and bc links readline);
# java, ruby, python3.11 and node are the runtimes of the language tools.
# chromium screenshots profile's flame graph. nmap, hydra, openssh-server,
# sudo and sshpass are the attacks and normal use owl detect's tests run.
# capsh and setcap (libcap2-bin) run the tools with reduced capabilities (test/privs).
TEST_DEPS = /usr/sbin/bpftool:bpftool /usr/bin/gcc:gcc /usr/bin/g++:g++ \
	/usr/include/stdio.h:libc6-dev /usr/bin/su:util-linux /usr/bin/login:login \
	/usr/bin/bpftrace:bpftrace /usr/sbin/funclatency:libbpf-tools \
	/usr/bin/dtrace:systemtap-sdt-dev /usr/bin/pamtester:pamtester \
	/usr/bin/tmux:tmux /usr/bin/bc:bc \
	/usr/bin/javac:openjdk-17-jdk-headless /usr/bin/ruby:ruby \
	/usr/bin/python3.11:python3.11 /usr/bin/node:nodejs /usr/bin/rustc:rustc \
	/usr/bin/chromium:chromium \
	/usr/bin/nmap:nmap /usr/bin/hydra:hydra /usr/sbin/sshd:openssh-server /usr/bin/sudo:sudo /usr/bin/sshpass:sshpass \
	/usr/bin/prometheus:prometheus /usr/bin/podman:podman /usr/sbin/runc:runc \
	/usr/bin/skopeo:skopeo /bin/busybox:busybox-static \
	/usr/sbin/capsh:libcap2-bin

deps-test:
	@missing=; for d in $(TEST_DEPS); do [ -e "$${d%%:*}" ] || missing="$$missing $${d#*:}"; done; \
	if [ -n "$$missing" ]; then echo "installing$$missing"; apt-get update -qq && $(APT_INSTALL) $$missing; fi
	PATH="$$PATH:$(dir $(GO))" deploy/collector/build.sh

generate: deps-generate
	$(GO) generate ./...

vmlinux: deps-generate
	bpftool btf dump file /sys/kernel/btf/vmlinux format c > bpf/vmlinux.h

deps-generate:
	@if ! command -v clang-14 >/dev/null || ! command -v llvm-strip >/dev/null || \
	    ! command -v bpftool >/dev/null || [ ! -f /usr/include/bpf/bpf_helpers.h ]; then \
		apt-get update -qq && $(APT_INSTALL) clang-14 llvm libbpf-dev bpftool; \
	fi

# owl against bpftrace and libbpf-tools, alternated run by run, and owl
# agent's start-up; rewrites the tables of docs/PERFORMANCE.md (about 10
# minutes on a quiet 2-CPU VM).
# Long runs, by hand (as root): not in make test or CI. make soak
# SOAK_DURATION=1m FUZZTIME=30s tries it in ~10 minutes. A duration-bound
# fuzz run can end with Go's spurious "context deadline exceeded" at its
# deadline (golang/go#75804): test/soak/fuzz.sh tells it from a crasher.
soak: deps-test
	OWL_E2E=require SOAK_DURATION=$(SOAK_DURATION) $(GO) test -count=1 -v -timeout 0 -run TestSoak ./test/soak
	$(MAKE) fuzz

fuzz:
	GO=$(GO) bash test/soak/fuzz.sh $(FUZZTIME) $(FUZZ)

# owl against bpftrace and libbpf-tools, alternated run by run; rewrites
# the tables of docs/PERFORMANCE.md (about 10 minutes on a quiet 2-CPU VM).
BENCH_DEPS = /usr/bin/bpftrace:bpftrace /usr/sbin/opensnoop:libbpf-tools /usr/bin/gcc:gcc \
	/usr/include/stdio.h:libc6-dev /usr/bin/stdbuf:coreutils

# The harness measures the binary `make build` ships (its tags included).
bench: build
	@missing=; for d in $(BENCH_DEPS); do [ -e "$${d%%:*}" ] || missing="$$missing $${d#*:}"; done; \
	if [ -n "$$missing" ]; then echo "installing$$missing"; apt-get update -qq && $(APT_INSTALL) $$missing; fi
	$(GO) run ./bench -owl $(CURDIR)/owl -out docs/PERFORMANCE.md
	$(GO) run ./bench/uprobes -n 1000000
	$(GO) run ./bench/profile

# End-to-end tests inside Debian's 6.1 and 6.12 kernels under qemu (kprobe
# and fentry paths); installs qemu, the kernels, busybox and compilers with
# apt when missing. See test/vm/run.sh.
.PHONY: vmtest
vmtest:
	bash test/vm/run.sh
