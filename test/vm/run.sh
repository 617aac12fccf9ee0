#!/usr/bin/env bash
# Runs owl's end-to-end tests inside Debian 12's 6.1 kernel under qemu, so the
# kprobe and fentry paths (and the 6.1 tracepoint layouts) are tested: the
# machine owl is developed on (6.18) has no kprobes or fentry.
#
#   make vmtest                                         # everything (as root)
#   VMTEST_PKGS=./internal/tools/tcpreset make vmtest   # some packages only
#
# Also: VMTEST_KERNEL (a vmlinuz), VMTEST_TIMEOUT (seconds for the whole
# guest run), VMTEST_TEST_TIMEOUT (-test.timeout of each test binary).
#
# Steps: install qemu, the kernel and busybox with apt when missing; build the
# static test binaries and owl; pack them with busybox into an initramfs whose
# /init runs each test binary (once as is, once per forced hook kind); boot it
# with TCG (KVM does not boot a stock kernel here); read the results from the
# serial console. Output: test/vm/out/{console.log,results.md}, and the
# results table copied to docs/vm-results.md.
#
# Exit status: 0 only when every guest run passed and the guest got to the end.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out="$here/out"
export PATH="$PATH:/usr/local/go/bin"

# The whole guest run (boot, tests, power-off) must end by then. Under TCG
# the tests take a few minutes; a hang must not block CI forever.
vm_timeout=${VMTEST_TIMEOUT:-1200}
# One test binary may run this long before Go panics with a stack dump,
# which says more than the outer timeout would.
test_timeout=${VMTEST_TEST_TIMEOUT:-300s}

# Busybox applets /init uses. Not su: busybox's su would make setuids'
# TestSu run against a guest with no /etc/passwd or PAM instead of skipping.
applets="sh mount mkdir cat echo ls ip ifconfig uname env grep cut date sleep dmesg poweroff"

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
# bpftool or go skip by themselves when those are missing. (capable's -U test
# gets its C program prebuilt: OWL_CHROOT_BIN.)
declare -A skip_in_guest=()

log() { echo "vmtest: [$((SECONDS - t0)) s] $*" >&2; }
t0=$SECONDS

# --- 1. Host packages ------------------------------------------------------

# dpkg -s is exact and cheap, so a second run installs nothing.
install_deps() {
	local pkgs=(qemu-system-x86 linux-image-amd64 busybox-static cpio gzip gcc libc6-dev) missing=()
	for p in "${pkgs[@]}"; do
		dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
	done
	if ((${#missing[@]})); then
		log "installing ${missing[*]}"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	fi
}

# The newest Debian 6.1 kernel in /boot (VMTEST_KERNEL overrides).
find_kernel() {
	if [[ -n ${VMTEST_KERNEL:-} ]]; then
		echo "$VMTEST_KERNEL"
		return
	fi
	local k
	k=$(find /boot -maxdepth 1 -name 'vmlinuz-6.1.*' | sort -V | tail -n 1)
	[[ -n $k ]] || { log "no /boot/vmlinuz-6.1.* after installing linux-image-amd64"; exit 1; }
	echo "$k"
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
	# The C program of capable's user-stack test, static: the guest has no
	# gcc and no libc.
	gcc -static -O0 -fno-omit-frame-pointer -o "$out/bin/chroot" "$root/internal/tools/capable/testdata/chroot.c"
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
# rather than building it with go.
export OWL_E2E=require OWL_BIN=/bin/owl OWL_CHROOT_BIN=/tests/chroot
cd /tmp || poweroff -f
while read -r name hooks skip <&3; do
	set -- -test.v -test.count=1 -test.timeout="$TEST_TIMEOUT"
	[ "$skip" = - ] || set -- "$@" -test.skip="$skip"
	echo "OWL-VM-RUN $name $hooks $skip"
	if [ "$hooks" = default ]; then unset OWL_HOOKS; else export OWL_HOOKS="$hooks"; fi
	start=$(date +%s)
	if "/tests/$name.test" "$@" </dev/null; then result=PASS; else result=FAIL; fi
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
# place in the guest. $kernel is main's.
add_test_modules() {
	local dir=$1 ver src m f
	ver=${kernel##*/vmlinuz-}
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

pack() {
	local dir="$out/initramfs" a
	rm -rf "$dir"
	mkdir -p "$dir"/{bin,tests,proc,sys,dev,tmp}
	cp /bin/busybox "$dir/bin/busybox"
	for a in $applets; do
		ln -s busybox "$dir/bin/$a"
	done
	cp "$out/bin/owl" "$dir/bin/owl"
	cp "$out"/bin/*.test "$out/bin/chroot" "$out/runs" "$out/kinds" "$dir/tests/"
	write_init "$dir/init"
	add_test_modules "$dir"
	(cd "$dir" && find . | cpio -o -H newc --quiet) | gzip -1 >"$out/initramfs.gz"
}

# --- 4. Boot and collect ---------------------------------------------------

boot() {
	local kernel=$1 rc=0
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
		-nographic -no-reboot -kernel "$kernel" -initrd "$out/initramfs.gz" \
		-append "console=ttyS0 panic=-1 softlockup_panic=1 quiet lsm=lockdown,capability,landlock,yama,apparmor,bpf TEST_TIMEOUT=$test_timeout" \
		</dev/null | tee "$out/console.log" || rc=$?
	# The serial console ends lines with \r\n, and the firmware clears the
	# screen with escape sequences: drop both so markers start their line.
	sed -i -e 's/\r$//' -e 's/\x1bc//g' -e 's/\x1b\[[0-9;?]*[A-Za-z]//g' "$out/console.log"
	if ((rc == 0)); then
		log "guest powered off"
	elif ((rc == 124)); then
		log "qemu did not finish within ${vm_timeout}s"
	else
		log "qemu exited with status $rc"
	fi
}

# results.md: one table of test runs, one of the hook each tool chose, and
# the raw `owl tools -v` output, all from the console log.
report() {
	local logf="$out/console.log" kernel
	kernel=$(awk '$1 == "OWL-VM-KERNEL" { print $2 }' "$logf")
	{
		echo "# owl end-to-end tests in qemu"
		echo
		echo "Generated by \`make vmtest\` (test/vm/run.sh) from the guest's serial console; do"
		echo "not edit. Hooks: default = owl's own choice; kprobe, fentry, tracepoint ="
		echo "OWL_HOOKS=kind (forced in the tools that have one)."
		echo
		echo "| kernel | package | hooks | result | seconds | failed tests | skipped tests | -test.skip |"
		echo "|---|---|---|---|---|---|---|---|"
		# Regexps go in code spans with | escaped, not to split the cell.
		awk -v kernel="${kernel:-?}" '
			function code(re) { gsub(/\|/, "\\|", re); return re == "-" ? "-" : "`" re "`" }
			$1 == "OWL-VM-RUN" {
				run = $2 " " $3; fail[run] = ""; skip[run] = ""
				filter[run] = code($4)
			}
			$1 == "---" && $2 == "FAIL:" { fail[run] = fail[run] (fail[run] == "" ? "" : ", ") $3 }
			$1 == "---" && $2 == "SKIP:" { skip[run] = skip[run] (skip[run] == "" ? "" : ", ") $3 }
			$1 == "OWL-VM-SECONDS" { secs[$2 " " $3] = $4 }
			$1 == "OWL-VM-RESULT" {
				r = $2 " " $3
				printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", kernel, $2, $3, $4, secs[r], fail[r], skip[r], filter[r]
			}' "$logf"
		echo
		# owl tools is a tabwriter table: the HOOK column starts where its
		# header does; indented lines are the -v reasons.
		awk -v kernel="${kernel:-?}" '
			$1 == "OWL-VM-TOOLS-BEGIN" { hooks = $2; kinds[++nk] = $2; inside = 1; next }
			$1 == "OWL-VM-TOOLS-END" { inside = 0; next }
			inside && $1 == "TOOL" { col = index($0, "HOOK"); next }
			inside && /^[^ ]/ {
				if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 }
				hook[$1, hooks] = substr($0, col)
			}
			END {
				printf "| kernel | tool |"
				for (k = 1; k <= nk; k++) printf " hook (%s) |", kinds[k] == "default" ? "default" : "--hook " kinds[k]
				printf "\n|---|---|"
				for (k = 1; k <= nk; k++) printf "---|"
				printf "\n"
				for (i = 1; i <= n; i++) {
					printf "| %s | %s |", kernel, order[i]
					for (k = 1; k <= nk; k++) printf " %s |", hook[order[i], kinds[k]]
					printf "\n"
				}
			}' "$logf"
		echo
		echo '```'
		awk '$1 == "OWL-VM-TOOLS-BEGIN" { print "$ owl tools -v" ($2 == "default" ? "" : " --hook " $2); inside = 1; next }
			$1 == "OWL-VM-TOOLS-END" { inside = 0; print ""; next }
			inside' "$logf"
		echo '```'
	} >"$out/results.md"
	# The committed copy: docs/ shows which hook each kernel gets and how
	# its tests went.
	cp "$out/results.md" "$root/docs/vm-results.md"
}

# Fails unless the guest reached OWL-VM-DONE and every run passed.
verdict() {
	local logf="$out/console.log" runs results failed
	runs=$(wc -l <"$out/runs")
	results=$(grep -c '^OWL-VM-RESULT ' "$logf" || true)
	failed=$(grep '^OWL-VM-RESULT .* FAIL$' "$logf" || true)
	echo
	grep '^OWL-VM-RESULT ' "$logf" || true
	if ! grep -qx OWL-VM-DONE "$logf"; then
		log "FAIL: the guest never printed OWL-VM-DONE ($results of $runs runs reported)"
		return 1
	fi
	if ((results != runs)); then
		log "FAIL: $results results for $runs runs"
		return 1
	fi
	if [[ -n $failed ]]; then
		log "FAIL: $(echo "$failed" | wc -l) of $runs guest runs failed; see $out/console.log and $out/results.md"
		return 1
	fi
	log "PASS: $runs guest runs passed; see $out/results.md"
}

main() {
	local kernel
	mkdir -p "$out"
	install_deps
	kernel=$(find_kernel)
	build
	pack
	boot "$kernel"
	report
	verdict
}

main "$@"
