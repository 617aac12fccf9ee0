// Package faults holds owl's reliability tests of issue 14, items 1 and 3
// (test files only): faults at random points leave nothing behind in the
// kernel, start/stop cycles do not grow anything, and targets that change
// under a running tool (exits, execs, replaced or deleted binaries, mount
// namespaces that go away) end it cleanly or leave it running. See
// docs/RELIABILITY.md.
package faults
