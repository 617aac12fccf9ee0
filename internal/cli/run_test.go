package cli

import (
	"bytes"
	"testing"
	"time"
)

// blocked is a writer that never returns, like a pipe nobody reads.
type blocked struct{}

func (blocked) Write([]byte) (int, error) { select {} }

// The last words on stderr must not keep owl from ending when stderr is a
// blocked pipe too (2>&1 | ...); when it is not, they are all written.
func TestBoundedWriter(t *testing.T) {
	w := &boundedWriter{w: blocked{}, timeout: 100 * time.Millisecond}
	start := time.Now()
	for range 3 {
		if n, err := w.Write([]byte("owl: lost\n")); n != 10 || err != nil {
			t.Errorf("Write: %d, %v", n, err)
		}
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("three writes to a blocked writer took %v, want one timeout in all", d)
	}
	var buf bytes.Buffer
	ok := &boundedWriter{w: &buf, timeout: 100 * time.Millisecond}
	ok.Write([]byte("a\n"))
	ok.Write([]byte("b\n"))
	if buf.String() != "a\nb\n" {
		t.Errorf("wrote %q", buf.String())
	}
}
