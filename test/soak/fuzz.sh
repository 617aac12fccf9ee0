#!/usr/bin/env bash
# Runs fuzz targets for a while each: fuzz.sh FUZZTIME PKG:TARGET[:COUNT]...
# (COUNT, make test's, is ignored here). A run that ends only with Go's
# spurious "context deadline exceeded" at its deadline (golang/go#75804)
# passes; one that found a crasher (testdata/fuzz/TARGET/...) fails.
set -uo pipefail
time=$1
shift
GO=${GO:-go}
failed=0
for f in "$@"; do
	IFS=: read -r pkg target _ <<<"$f"
	log=$(mktemp)
	echo "== $pkg $target for $time"
	"$GO" test -run '^$' -fuzz "^$target\$" -fuzztime "$time" "$pkg" 2>&1 | tee "$log" | tail -3
	status=${PIPESTATUS[0]}
	if ((status != 0)); then
		if grep -q 'Failing input written' "$log" || ! grep -q 'context deadline exceeded' "$log"; then
			grep -E -A3 -- '--- FAIL|Failing input|panic:' "$log"
			echo "FAIL: $pkg $target"
			failed=1
		fi
	fi
	rm -f "$log"
done
exit $failed
