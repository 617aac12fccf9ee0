#!/usr/bin/env bash
# Builds the OpenTelemetry Collector owl agent's end-to-end tests export to
# (OTLP receiver, file exporter; builder.yaml) with the collector builder,
# and links it to where the tests look: bin/otelcol-owl/otelcol-owl.
# It takes ~1.5 min on a quiet machine and ~30 min on a loaded one, and CI
# runs in a fresh clone: the binary is cached outside the clone, keyed by
# the builder's version and the manifest.
set -euo pipefail
cd "$(dirname "$0")/../.."
builder_version=v0.159.0
key=$( (echo "$builder_version"; cat deploy/collector/builder.yaml) | sha256sum | cut -c1-16)
cache=${OWL_CACHE:-/var/cache/owl-ci}/otelcol-owl-$key
if [ ! -x "$cache/otelcol-owl" ]; then
	go install "go.opentelemetry.io/collector/cmd/builder@$builder_version"
	mkdir -p bin && "$(go env GOPATH)/bin/builder" --config deploy/collector/builder.yaml
	mkdir -p "$cache"
	cp bin/otelcol-owl/otelcol-owl "$cache/otelcol-owl.tmp"
	mv "$cache/otelcol-owl.tmp" "$cache/otelcol-owl"
fi
mkdir -p bin/otelcol-owl && ln -sfn "$cache/otelcol-owl" bin/otelcol-owl/otelcol-owl
