#!/usr/bin/env bash
# Runs owl's end-to-end tests inside two Debian 12 kernels under qemu, 6.1
# (bookworm) and 6.12 (bookworm's linux-image-6.12-amd64), so the kprobe and
# fentry paths and both kernels' tracepoint layouts are tested (both also
# have BPF LSM and modules): the machine owl is developed on (6.18) has no
# kprobes, fentry, BPF LSM or modules.
#
#   make vmtest                                         # everything (as root)
#   VMTEST_PKGS=./internal/tools/tcpreset make vmtest   # some packages only
#   VMTEST_KERNELS=/boot/vmlinuz-6.12.117+deb12-amd64 make vmtest  # one kernel
#
# Also: VMTEST_TIMEOUT (seconds for one guest's whole run),
# VMTEST_TEST_TIMEOUT (-test.timeout of each test binary), VMTEST_PARALLEL
# (1: boot the guests at once, each on a host CPU of its own, as TCG with
# thread=single uses one; the default where the host has a CPU per guest,
# else 0: one after the other).
#
# Steps: install qemu, the kernels, busybox and compilers with apt when
# missing; build the static test binaries, owl and the programs the tests
# trace (e2e.Program); pack them with busybox into an initramfs whose /init
# runs each test binary (once as is, once per forced hook kind); boot it on
# each kernel in turn with TCG (KVM does not boot a stock kernel here); read
# the results from the serial consoles. Output:
# test/vm/out/<kernel release>/console.log, test/vm/out/results.md, the
# latter copied to docs/vm-results.md (one column per kernel).
#
# Exit status: 0 only when every guest run passed on every kernel and each
# guest got to the end.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out="$here/out"
export PATH="$PATH:/usr/local/go/bin"

# One guest's whole run (boot, tests, power-off) must end by then. Under TCG
# the tests took 15 to 25 minutes on a busy 2-CPU host (guests in parallel,
# every package of issues 9 to 12); a hang
# must not block CI forever.
vm_timeout=${VMTEST_TIMEOUT:-2700}
# One test binary may run this long before Go panics with a stack dump,
# which says more than the outer timeout would.
test_timeout=${VMTEST_TEST_TIMEOUT:-300s}

# Busybox applets /init uses. Not su: busybox's su would make setuids'
# TestSu run against a guest with no /etc/passwd or PAM instead of skipping.
applets="sh mount mkdir cat echo ls ip ifconfig uname env grep cut date sleep dmesg poweroff tee sed tr"

# Hook kinds that get a forced run (OWL_HOOKS=kind) of each package whose
# tools have such a hook, besides the run with owl's own choice. OWL_HOOKS
# leaves tools without a hook of that kind on their usual one, so cmd/owl,
# which drives every tool, gets each forced run.
forced_kinds="kprobe fentry"

# More forced kinds for some packages. tcpreset: on 6.1 the chain passes
# over tcp:tcp_send_reset (it misses closed-port resets before 6.10), so only
# a forced run proves the tool reads that tracepoint's old layout.
declare -A extra_kinds=(
	[tcpreset]=tracepoint
)

# Tests skipped in the guest whatever the hooks (-test.skip regexps), because
# they need a host tool the initramfs does not have. Tests that need su,
# bpftool, bpftrace or libbpf-tools skip by themselves when those are
# missing; the programs tests trace come prebuilt (build_programs).
declare -A skip_in_guest=()

# More files for the initramfs, "HOST_PATH GUEST_PATH" each; {kver} in
# either stands for the guest kernel's release, so that kernel modules
# reach the kernel they were built for, e.g. (Debian's 6.12 modules are
# .ko.xz, 6.1's .ko)
#   "/lib/modules/{kver}/kernel/fs/isofs/isofs.ko.xz /lib/modules/{kver}/isofs.ko.xz"
extra_files=()

log() { echo "vmtest: [$((SECONDS - t0)) s] $*" >&2; }
t0=$SECONDS

# --- 1. Host packages ------------------------------------------------------

# dpkg -s is exact and cheap, so a second run installs nothing. The kernels:
# linux-image-amd64 is bookworm's 6.1, linux-image-6.12-amd64 (bookworm's
# security suite) the newest 6.12. g++ brings the static libstdc++.
install_deps() {
	local pkgs=(qemu-system-x86 linux-image-amd64 linux-image-6.12-amd64 busybox-static cpio gzip gcc g++ libc6-dev) missing=()
	for p in "${pkgs[@]}"; do
		dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
	done
	# rustc may come from rustup rather than apt.
	command -v rustc >/dev/null || dpkg -s rustc >/dev/null 2>&1 || missing+=(rustc)
	if ((${#missing[@]})); then
		log "installing ${missing[*]}"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	fi
}

# The guest kernels, one vmlinuz a line: VMTEST_KERNELS (space-separated),
# else the newest Debian 6.1 and 6.12 kernels in /boot.
find_kernels() {
	if [[ -n ${VMTEST_KERNELS:-} ]]; then
		# Unquoted: it may name several kernels.
		# shellcheck disable=SC2086
		printf '%s\n' $VMTEST_KERNELS
		return
	fi
	local series k
	for series in 6.1 6.12; do
		k=$(find /boot -maxdepth 1 -name "vmlinuz-$series.*" | sort -V | tail -n 1)
		[[ -n $k ]] || { log "no /boot/vmlinuz-$series.* after installing the kernel packages"; exit 1; }
		echo "$k"
	done
}

# The release (uname -r) of a vmlinuz: Debian names them vmlinuz-RELEASE.
kernel_release() {
	local b
	b=$(basename "$1")
	echo "${b#vmlinuz-}"
}

# --- 2. Test binaries ------------------------------------------------------

# Packages whose tests import internal/e2e, i.e. load BPF: "name dir" lines,
# name being the last path element (cmd/owl gives "owl"). -e: a package
# someone is editing elsewhere must not stop the listing.
e2e_packages() {
	# VMTEST_PKGS unquoted: it may name several packages.
	# shellcheck disable=SC2086
	(cd "$root" && go list -e \
		-f '{{.Dir}} {{join .TestImports " "}} {{join .XTestImports " "}}' \
		${VMTEST_PKGS:-./...}) |
		awk '/ github.com\/owlbpf\/owl\/internal\/e2e( |$)/ { n = split($1, p, "/"); print p[n], $1 }'
}

# Whether the package in dir declares a hook of this kind (kprobe, fentry):
# "Kind: probe.Kprobe" in its non-test source. Forcing a kind on a package
# without one would only repeat the default run.
has_kind() {
	local dir=$1 kind=$2
	grep -Eqrs --include='*.go' --exclude='*_test.go' "Kind:[[:space:]]*probe\.${kind^}\b" "$dir"
}

# Builds the test binaries and owl, and writes the guest's list of runs:
# one line per run, "name hooks skip", hooks being default (owl's own
# choice) or a forced kind, skip a -test.skip regexp (- for none).
build() {
	rm -rf "${out:?}/bin"
	mkdir -p "$out/bin"
	: >"$out/runs"
	local name dir kind skip
	while read -r name dir; do
		log "building $name.test"
		(cd "$root" && CGO_ENABLED=0 go test -c -o "$out/bin/$name.test" "$dir")
		skip=${skip_in_guest[$name]:--}
		echo "$name default $skip" >>"$out/runs"
		for kind in $forced_kinds; do
			if [[ $name == owl ]] || has_kind "$dir" "$kind"; then
				echo "$name $kind $skip" >>"$out/runs"
			fi
		done
		for kind in ${extra_kinds[$name]:-}; do
			echo "$name $kind $skip" >>"$out/runs"
		done
	done < <(e2e_packages)
	echo "$forced_kinds" >"$out/kinds"
	[[ -s $out/runs ]] || { log "no package with end-to-end tests in ${VMTEST_PKGS:-./...}"; exit 1; }
	log "building owl"
	(cd "$root" && CGO_ENABLED=0 go build -o "$out/bin/owl" ./cmd/owl)
	log "building the programs tests trace"
	build_programs
}

# The programs tests trace, as e2e.Program names them: the guest has no
# compilers, so they are built here, static (it has no libc either), with
# the flags of the test's own build function. A test that adds a program
# adds its line here; in the guest, e2e.Program fails for a missing one.
build_programs() {
	local cflags=(-O1 -fno-omit-frame-pointer -fno-inline)
	rm -rf "${out:?}/programs"
	prog_c capable/chroot internal/tools/capable/testdata/chroot.c -O0 -fno-omit-frame-pointer
	prog_c funccount/work internal/tools/funccount/testdata/work.c "${cflags[@]}"
	prog_c funccount/mallocs internal/tools/funccount/testdata/mallocs.c "${cflags[@]}" -fno-builtin
	prog_cxx funccount/shapes internal/tools/funccount/testdata/shapes.cpp "${cflags[@]}"
	prog_go funccount/goapp internal/tools/funccount/testdata/goapp
	prog_go funccount/goapp-stripped internal/tools/funccount/testdata/goapp "-ldflags=-s -w"
	prog_rust funccount/shapes-rs internal/tools/funccount/testdata/shapes.rs -C opt-level=1
	prog_c funclatency/target internal/tools/funclatency/testdata/target.c "${cflags[@]}"
	prog_go funclatency/go-full internal/tools/funclatency/testdata/goapp -ldflags=
	prog_go funclatency/go-stripped internal/tools/funclatency/testdata/goapp -ldflags=-s
}

# prog_KIND NAME SOURCE FLAGS...: builds SOURCE (relative to the repository)
# into $out/programs/NAME.
prog_c() { prog_cc gcc "$@"; }
prog_cxx() { prog_cc g++ "$@"; }
prog_cc() {
	local cc=$1 name=$2 src=$3
	shift 3
	mkdir -p "$(dirname "$out/programs/$name")"
	"$cc" -static "$@" -o "$out/programs/$name" "$root/$src"
}
prog_go() {
	local name=$1 dir=$2
	shift 2
	mkdir -p "$(dirname "$out/programs/$name")"
	(cd "$root/$dir" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build "$@" -o "$out/programs/$name" .)
}
prog_rust() {
	local name=$1 src=$2
	shift 2
	mkdir -p "$(dirname "$out/programs/$name")"
	rustc -C target-feature=+crt-static "$@" -o "$out/programs/$name" "$root/$src"
}

# --- 3. Initramfs ----------------------------------------------------------

# The guest's /init. Quoted heredoc: nothing in it is expanded on the host.
write_init() {
	cat >"$1" <<'EOF'
#!/bin/sh
# Guest side of test/vm/run.sh: mount what owl needs, run the tests listed in
# /tests/runs, print OWL-VM-* markers for the host, power off.
export PATH=/bin
mount -t devtmpfs devtmpfs /dev
# The kernel found no /dev/console in the initramfs; talk to it now.
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
# quiet keeps the boot short; from now on show kernel warnings with their
# stack traces (soft lockups, BPF splats): they belong to the test results.
echo 5 >/proc/sys/kernel/printk
mount -t sysfs sysfs /sys
mount -t tracefs tracefs /sys/kernel/tracing
mount -t debugfs debugfs /sys/kernel/debug
mount -t bpf bpf /sys/fs/bpf
# /sys/kernel/security/lsm says whether the bpf LSM is active (seccount --lsm).
mount -t securityfs securityfs /sys/kernel/security

# The tests connect to 127.0.0.1 and ::1.
ip link set lo up
grep -q '^0*1 .* lo$' /proc/net/if_inet6 || echo "OWL-VM-WARNING no ::1 on lo: $(cat /proc/net/if_inet6)"

# Seconds since boot at each phase, to see where the time goes under TCG.
uptime() { echo "OWL-VM-UPTIME $1 $(cut -d' ' -f1 /proc/uptime)"; }

# A blank line first: the firmware leaves escape sequences on the last line.
echo
echo "OWL-VM-KERNEL $(uname -r)"
uptime init
# The hook each tool picks, by itself and with each forced kind.
for hooks in default $(cat /tests/kinds); do
	echo "OWL-VM-TOOLS-BEGIN $hooks"
	if [ "$hooks" = default ]; then
		owl tools -v
	else
		owl tools -v --hook "$hooks"
	fi
	echo "OWL-VM-TOOLS-END $hooks"
done

uptime tools
# Fail, do not skip, when BPF cannot run; cmd/owl's tests run /bin/owl
# rather than building it with go; the programs tests trace are prebuilt
# (e2e.Program).
export OWL_E2E=require OWL_BIN=/bin/owl OWL_TEST_PROGRAMS=/tests/programs
cd /tmp || poweroff -f
set -o pipefail
while read -r name hooks skip <&3; do
	set -- -test.v -test.count=1 -test.timeout="$TEST_TIMEOUT"
	[ "$skip" = - ] || set -- "$@" -test.skip="$skip"
	echo "OWL-VM-RUN $name $hooks $skip"
	if [ "$hooks" = default ]; then unset OWL_HOOKS; else export OWL_HOOKS="$hooks"; fi
	start=$(date +%s)
	if "/tests/$name.test" "$@" </dev/null 2>&1 | tee /tmp/run.out; then
		result=PASS
	else
		result=FAIL
		# TCG runs the guest 10-50x slower than hardware and unevenly: the
		# tests that failed run once more, and passing then makes the run
		# FLAKY, not PASS (the first failure stays in the log and in
		# docs/vm-results.md, and the host's output lists it at the end).
		# A panic (a timeout) reruns nothing: the whole binary failed.
		failed=$(sed -n 's/^--- FAIL: \([^ ]*\) .*/\1/p' /tmp/run.out | tr '\n' '|')
		failed=${failed%|}
		if [ -n "$failed" ] && ! grep -q '^panic:' /tmp/run.out; then
			echo "OWL-VM-RERUN $name $hooks $failed"
			if "/tests/$name.test" "$@" -test.run="^($failed)\$" </dev/null; then result=FLAKY; fi
		fi
	fi
	echo "OWL-VM-SECONDS $name $hooks $(($(date +%s) - start))"
	echo "OWL-VM-RESULT $name $hooks $result"
done 3</tests/runs

uptime tests
echo OWL-VM-DONE
poweroff -f
EOF
	chmod 755 "$1"
}

# modsnoop's test loads small modules of the guest kernel (fs/nls, no
# dependencies) with finit_module: copy them from the host's /lib/modules
# for that kernel (linux-image installs them), decompressed, to the same
# place in the guest (the archive of that kernel: pack_kernel).
add_test_modules() {
	local dir=$1 ver=$2 src m f
	src=/lib/modules/$ver/kernel/fs/nls
	[[ -d $src ]] || { log "no $src: modsnoop's module test will fail"; return; }
	mkdir -p "$dir/lib/modules/$ver/kernel/fs/nls"
	for m in nls_iso8859-1 nls_cp437 nls_ascii; do
		for f in "$src/$m.ko" "$src/$m.ko.xz" "$src/$m.ko.zst" "$src/$m.ko.gz"; do
			[[ -f $f ]] || continue
			case $f in
			*.xz) xz -dc "$f" ;;
			*.zst) zstd -dc "$f" ;;
			*.gz) gzip -dc "$f" ;;
			*) cat "$f" ;;
			esac >"$dir/lib/modules/$ver/kernel/fs/nls/$m.ko"
			break
		done
	done
}

# The initramfs common to every kernel: busybox, owl, the test binaries and
# programs, /init.
pack() {
	local dir="$out/initramfs" a
	rm -rf "$dir"
	mkdir -p "$dir"/{bin,tests,proc,sys,dev,tmp}
	cp /bin/busybox "$dir/bin/busybox"
	for a in $applets; do
		ln -s busybox "$dir/bin/$a"
	done
	cp "$out/bin/owl" "$dir/bin/owl"
	cp "$out"/bin/*.test "$out/runs" "$out/kinds" "$dir/tests/"
	cp -r "$out/programs" "$dir/tests/programs"
	write_init "$dir/init"
	(cd "$dir" && find . | cpio -o -H newc --quiet) | gzip -1 >"$out/initramfs.gz"
}

# The initramfs of one kernel: the common one, then an archive of the
# extra files for that release (the kernel unpacks concatenated archives
# in turn).
pack_kernel() {
	local kver=$1 dir="$out/$1/extra" entry src dst
	rm -rf "$dir"
	mkdir -p "$dir"
	for entry in "${extra_files[@]}"; do
		read -r src dst <<<"${entry//\{kver\}/$kver}"
		mkdir -p "$dir/$(dirname "$dst")"
		cp "$src" "$dir/$dst"
	done
	add_test_modules "$dir" "$kver"
	cp "$out/initramfs.gz" "$out/$kver/initramfs.gz"
	(cd "$dir" && find . | cpio -o -H newc --quiet) | gzip -1 >>"$out/$kver/initramfs.gz"
}

# --- 4. Boot and collect ---------------------------------------------------

# Boots kernel with its initramfs; the console goes to out/KVER/console.log.
boot() {
	local kernel=$1 kver rc=0 logf
	kver=$(kernel_release "$kernel")
	logf="$out/$kver/console.log"
	log "booting $kernel (TCG; timeout ${vm_timeout}s)"
	# thread=single: one host thread runs both vCPUs in turn. With the
	# default multi-threaded TCG, a vCPU in syscall entry sometimes spins
	# for good at syscall_trace_enter+0xe9 (the sys_enter tracepoint's
	# static key) while another patches it, i.e. when a tool attaches to or
	# detaches from syscall tracepoints: a soft lockup in 4 of 9 full runs
	# here, none with thread=single, which is no slower.
	# -no-reboot plus panic=-1: a crash or an /init that exits ends qemu
	# instead of looping; softlockup_panic=1 turns a wedged kernel into such
	# a crash rather than a wait for the timeout. The lsm list enables BPF
	# LSM, off by default on 6.1. TEST_TIMEOUT reaches /init's environment:
	# the kernel hands init the name=value boot arguments it does not know.
	timeout "$vm_timeout" qemu-system-x86_64 -accel tcg,thread=single -cpu max -smp 2 -m 2048 \
		-nographic -no-reboot -kernel "$kernel" -initrd "$out/$kver/initramfs.gz" \
		-append "console=ttyS0 panic=-1 softlockup_panic=1 quiet lsm=lockdown,capability,landlock,yama,apparmor,bpf TEST_TIMEOUT=$test_timeout" \
		</dev/null | tee "$logf" || rc=$?
	# The serial console ends lines with \r\n, and the firmware clears the
	# screen with escape sequences: drop both so markers start their line.
	sed -i -e 's/\r$//' -e 's/\x1bc//g' -e 's/\x1b\[[0-9;?]*[A-Za-z]//g' "$logf"
	if ((rc == 0)); then
		log "guest powered off"
	elif ((rc == 124)); then
		log "qemu did not finish within ${vm_timeout}s"
	else
		log "qemu exited with status $rc"
	fi
}

# results.md, from the guests' console logs (one per kernel, in order): a
# table of test runs, one of skipped tests and one of the hook each tool
# chose, each with one column per kernel, then the raw `owl tools -v`
# output of each kernel.
report() {
	local logs=("$@")
	{
		echo "# owl end-to-end tests in qemu"
		echo
		echo "Generated by \`make vmtest\` (test/vm/run.sh) from the guests' serial consoles;"
		echo "do not edit. Hooks: default = owl's own choice; kprobe, fentry, tracepoint ="
		echo "OWL_HOOKS=kind (forced in the tools that have one). A cell is the result of"
		echo "the package's test binary on that kernel and its seconds under TCG, with the"
		echo "tests that failed. FLAKY: tests failed, then passed when run once more (the"
		echo "failures are kept in the console log; make vmtest prints them at its end)."
		echo
		# Regexps go in code spans with | escaped, not to split the cell.
		# Rows in the order of the first kernel's runs (all kernels run
		# the same list).
		awk '
			function code(re) { gsub(/\|/, "\\|", re); return re == "-" ? "-" : "`" re "`" }
			FNR == 1 { k = ++nk; kernel[k] = "?" }
			$1 == "OWL-VM-KERNEL" { kernel[k] = $2 }
			$1 == "OWL-VM-RUN" {
				run = $2 " | " $3
				if (!(run in seen)) { seen[run] = 1; order[++n] = run; filter[run] = code($4) }
				fail[k, run] = ""; skip[k, run] = ""
			}
			$1 == "---" && $2 == "FAIL:" { fail[k, run] = fail[k, run] (fail[k, run] == "" ? "" : ", ") $3 }
			$1 == "---" && $2 == "SKIP:" { skip[k, run] = skip[k, run] (skip[k, run] == "" ? "" : ", ") $3; anyskip[run] = 1 }
			$1 == "OWL-VM-SECONDS" { secs[k, $2 " | " $3] = $4 }
			$1 == "OWL-VM-RESULT" { result[k, $2 " | " $3] = $4 }
			function head(first, last,   i) {
				printf "| package | hooks |"
				for (i = 1; i <= nk; i++) printf " %s |", kernel[i]
				printf "%s\n|---|---|", last == "" ? "" : " " last " |"
				for (i = 1; i <= nk; i++) printf "---|"
				printf "%s\n", last == "" ? "" : "---|"
			}
			END {
				print "## Test runs\n"
				head("", "-test.skip")
				for (i = 1; i <= n; i++) {
					r = order[i]
					printf "| %s |", r
					for (j = 1; j <= nk; j++) {
						cell = ((j, r) in result) ? result[j, r] " " secs[j, r] " s" : "not run"
						if (fail[j, r] != "") cell = cell ": " fail[j, r]
						printf " %s |", cell
					}
					printf " %s |\n", filter[r]
				}
				print "\n## Skipped tests\n"
				print "Tests that skip by themselves in the guest (a peer tool or su missing, a"
				print "kernel without the feature), per kernel.\n"
				head("", "")
				for (i = 1; i <= n; i++) {
					r = order[i]
					if (!(r in anyskip)) continue
					printf "| %s |", r
					for (j = 1; j <= nk; j++) printf " %s |", skip[j, r]
					printf "\n"
				}
			}' "${logs[@]}"
		echo
		# owl tools is a tabwriter table: the HOOK column starts where its
		# header does; indented lines are the -v reasons.
		awk '
			FNR == 1 { k = ++nk; kernel[k] = "?" }
			$1 == "OWL-VM-KERNEL" { kernel[k] = $2 }
			$1 == "OWL-VM-TOOLS-BEGIN" {
				hooks = $2; inside = 1
				if (!(hooks in kseen)) { kseen[hooks] = 1; kinds[++nkind] = hooks }
				next
			}
			$1 == "OWL-VM-TOOLS-END" { inside = 0; next }
			inside && $1 == "TOOL" { col = index($0, "HOOK"); next }
			inside && /^[^ ]/ {
				if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 }
				hook[k, $1, hooks] = substr($0, col)
			}
			END {
				print "## Hooks\n"
				printf "| tool | hooks |"
				for (j = 1; j <= nk; j++) printf " %s |", kernel[j]
				printf "\n|---|---|"
				for (j = 1; j <= nk; j++) printf "---|"
				printf "\n"
				for (i = 1; i <= n; i++)
					for (h = 1; h <= nkind; h++) {
						printf "| %s | %s |", order[i], kinds[h] == "default" ? "default" : "--hook " kinds[h]
						for (j = 1; j <= nk; j++) printf " %s |", hook[j, order[i], kinds[h]]
						printf "\n"
					}
			}' "${logs[@]}"
		local logf
		for logf in "${logs[@]}"; do
			echo
			echo "## owl tools -v on $(awk '$1 == "OWL-VM-KERNEL" { print $2 }' "$logf")"
			echo
			echo '```'
			awk '$1 == "OWL-VM-TOOLS-BEGIN" { print "$ owl tools -v" ($2 == "default" ? "" : " --hook " $2); inside = 1; next }
				$1 == "OWL-VM-TOOLS-END" { inside = 0; print ""; next }
				inside' "$logf"
			echo '```'
		done
	} >"$out/results.md"
	# The committed copy: docs/ shows which hook each kernel gets and how
	# its tests went.
	cp "$out/results.md" "$root/docs/vm-results.md"
}

# Repeats what failed in one kernel's guest: CI shows only the tail of a
# run, and the console logs stay on the machine that ran it. Each failed
# run's failing tests (from "--- FAIL", a panic or a build error, 60 lines
# at most each), or the console's end when the guest never finished.
failures() {
	local logf=$1 kver=$2
	if ! grep -qx OWL-VM-DONE "$logf"; then
		echo "== $kver: the guest's console ends with =="
		tail -n 80 "$logf"
		return
	fi
	grep -q '^OWL-VM-RESULT .* \(FAIL\|FLAKY\)$' "$logf" || return 0
	echo "== $kver: what failed, FLAKY runs' first failures included (whole console: $logf) =="
	# The guests run go test -v: a test's log lines come before its
	# "--- FAIL", so each top-level test is buffered from its "=== RUN"
	# and printed (its last 60 lines) only if it failed.
	awk 'function flush() { for (i = (nb > 60 ? nb - 59 : 1); i <= nb; i++) print "[" run "] " buf[i]; nb = 0 }
		$1 == "OWL-VM-RUN" { run = $2 " " $3; nb = 0; tail = 0; next }
		$1 == "OWL-VM-RESULT" { nb = 0; tail = 0; next }
		/^=== RUN   [^\/]*$/ { nb = 0; tail = 0 }
		/^--- (PASS|SKIP)/ { nb = 0; next }
		/^--- FAIL/ { buf[++nb] = $0; flush(); tail = 20; next }
		/^panic:|^# |\[build failed\]|test timed out/ { tail = 60 }
		tail > 0 { print "[" run "] " $0; tail--; next }
		{ buf[++nb] = $0 }' "$logf" | tail -n 300
}

# Fails unless the guest of one kernel reached OWL-VM-DONE and every run
# passed.
verdict() {
	local logf=$1 kver=$2 runs results failed flaky
	runs=$(wc -l <"$out/runs")
	results=$(grep -c '^OWL-VM-RESULT ' "$logf" || true)
	failed=$(grep '^OWL-VM-RESULT .* FAIL$' "$logf" || true)
	echo
	grep '^OWL-VM-RESULT ' "$logf" | sed "s/^/$kver: /" || true
	if ! grep -qx OWL-VM-DONE "$logf"; then
		log "FAIL on $kver: the guest never printed OWL-VM-DONE ($results of $runs runs reported)"
		return 1
	fi
	if ((results != runs)); then
		log "FAIL on $kver: $results results for $runs runs"
		return 1
	fi
	if [[ -n $failed ]]; then
		log "FAIL on $kver: $(echo "$failed" | wc -l) of $runs guest runs failed; see $logf and $out/results.md"
		return 1
	fi
	flaky=$(grep '^OWL-VM-RESULT .* FLAKY$' "$logf" || true)
	if [[ -n $flaky ]]; then
		log "PASS on $kver with $(echo "$flaky" | wc -l) FLAKY runs (failed, then passed their failed tests once more): see the end of this output"
		return 0
	fi
	log "PASS on $kver: $runs guest runs passed"
}

main() {
	local kernels=() kernel kver logs=() rc=0 list pid
	mkdir -p "$out"
	install_deps
	list=$(find_kernels)
	mapfile -t kernels <<<"$list"
	build
	pack
	local parallel=${VMTEST_PARALLEL:-$(($(nproc) >= ${#kernels[@]}))} pids=()
	for kernel in "${kernels[@]}"; do
		kver=$(kernel_release "$kernel")
		mkdir -p "$out/$kver"
		pack_kernel "$kver"
		logs+=("$out/$kver/console.log")
		if ((parallel)); then
			# The consoles would interleave: each goes to its log only.
			boot "$kernel" >/dev/null &
			pids+=($!)
		else
			boot "$kernel"
		fi
	done
	for pid in "${pids[@]}"; do
		wait "$pid"
	done
	report "${logs[@]}"
	for kernel in "${kernels[@]}"; do
		kver=$(kernel_release "$kernel")
		verdict "$out/$kver/console.log" "$kver" || rc=1
	done
	for kernel in "${kernels[@]}"; do
		kver=$(kernel_release "$kernel")
		failures "$out/$kver/console.log" "$kver"
	done
	log "results: $out/results.md"
	return $rc
}

main "$@"
