#!/usr/bin/env bash
# Runs `go test ARGS` keeping the whole output in bin/gotest.log, and on a
# failure repeats the failures at the end: CI shows only the tail of a run,
# and the failing package is usually far above it among the "ok" lines.
set -uo pipefail
go=${GO:-go}
mkdir -p bin
log=bin/gotest.log
"$go" test "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
if ((rc != 0)); then
	echo
	echo "== go test failed (exit $rc); the failures again (whole output: $log) =="
	# Each failing test's block: from its "--- FAIL" (or a panic or a build
	# error) to the next package verdict, at most 60 lines a block.
	awk '/^(--- FAIL|panic:|FAIL|# )/ || /\[build failed\]|\[setup failed\]/ { n = 60 }
		n > 0 { print; n-- }
		/^(ok|FAIL)[ \t]/ { n = 0 }' "$log" | tail -n 400
	echo "== failing packages =="
	grep -E '^FAIL[[:space:]]' "$log" || true
fi
exit "$rc"
