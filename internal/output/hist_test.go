package output

import (
	"encoding/json"
	"testing"
)

// The expected texts are libbpf-tools' output: funclatency 0.26 (Debian's
// libbpf-tools) run on this machine for the first two, print_log2_hist of
// libbpf-tools' trace_helpers.c compiled with gcc for the others.
var histCases = []struct {
	name  string
	slots map[int]uint64
	label string
	want  string
}{
	{
		name:  "funclatency -m sleep_ms",
		slots: map[int]uint64{0: 2, 2: 20, 4: 3},
		label: "msec",
		want: `     msec                : count    distribution
         0 -> 1          : 2        |****                                    |
         2 -> 3          : 0        |                                        |
         4 -> 7          : 20       |****************************************|
         8 -> 15         : 0        |                                        |
        16 -> 31         : 3        |******                                  |
`,
	},
	{
		name:  "funclatency work, ns",
		slots: map[int]uint64{10: 1944, 11: 36, 13: 2, 14: 2, 15: 10, 16: 4, 18: 1, 19: 1},
		label: "nsec",
		want: `     nsec                : count    distribution
         0 -> 1          : 0        |                                        |
         2 -> 3          : 0        |                                        |
         4 -> 7          : 0        |                                        |
         8 -> 15         : 0        |                                        |
        16 -> 31         : 0        |                                        |
        32 -> 63         : 0        |                                        |
        64 -> 127        : 0        |                                        |
       128 -> 255        : 0        |                                        |
       256 -> 511        : 0        |                                        |
       512 -> 1023       : 0        |                                        |
      1024 -> 2047       : 1944     |****************************************|
      2048 -> 4095       : 36       |                                        |
      4096 -> 8191       : 0        |                                        |
      8192 -> 16383      : 2        |                                        |
     16384 -> 32767      : 2        |                                        |
     32768 -> 65535      : 10       |                                        |
     65536 -> 131071     : 4        |                                        |
    131072 -> 262143     : 0        |                                        |
    262144 -> 524287     : 1        |                                        |
    524288 -> 1048575    : 1        |                                        |
`,
	},
	{
		name:  "wide layout past slot 32",
		slots: map[int]uint64{3: 7, 5: 100, 6: 33, 34: 1, 35: 12345678},
		label: "nsecs",
		want: `               nsecs                         : count    distribution
                   0 -> 1                    : 0        |                    |
                   2 -> 3                    : 0        |                    |
                   4 -> 7                    : 0        |                    |
                   8 -> 15                   : 7        |                    |
                  16 -> 31                   : 0        |                    |
                  32 -> 63                   : 100      |                    |
                  64 -> 127                  : 33       |                    |
                 128 -> 255                  : 0        |                    |
                 256 -> 511                  : 0        |                    |
                 512 -> 1023                 : 0        |                    |
                1024 -> 2047                 : 0        |                    |
                2048 -> 4095                 : 0        |                    |
                4096 -> 8191                 : 0        |                    |
                8192 -> 16383                : 0        |                    |
               16384 -> 32767                : 0        |                    |
               32768 -> 65535                : 0        |                    |
               65536 -> 131071               : 0        |                    |
              131072 -> 262143               : 0        |                    |
              262144 -> 524287               : 0        |                    |
              524288 -> 1048575              : 0        |                    |
             1048576 -> 2097151              : 0        |                    |
             2097152 -> 4194303              : 0        |                    |
             4194304 -> 8388607              : 0        |                    |
             8388608 -> 16777215             : 0        |                    |
            16777216 -> 33554431             : 0        |                    |
            33554432 -> 67108863             : 0        |                    |
            67108864 -> 134217727            : 0        |                    |
           134217728 -> 268435455            : 0        |                    |
           268435456 -> 536870911            : 0        |                    |
           536870912 -> 1073741823           : 0        |                    |
          1073741824 -> 2147483647           : 0        |                    |
          2147483648 -> 4294967295           : 0        |                    |
          4294967296 -> 8589934591           : 0        |                    |
          8589934592 -> 17179869183          : 0        |                    |
         17179869184 -> 34359738367          : 1        |                    |
         34359738368 -> 68719476735          : 12345678 |********************|
`,
	},
	{
		name:  "slot 0 only",
		slots: map[int]uint64{0: 1},
		label: "usecs",
		want: `     usecs               : count    distribution
         0 -> 1          : 1        |****************************************|
`,
	},
	{
		name:  "label longer than its column, slot 32 still narrow",
		slots: map[int]uint64{31: 1, 32: 3},
		label: "a_rather_long_label_here",
		want: `     a_rather_long_label_here : count    distribution
         0 -> 1          : 0        |                                        |
         2 -> 3          : 0        |                                        |
         4 -> 7          : 0        |                                        |
         8 -> 15         : 0        |                                        |
        16 -> 31         : 0        |                                        |
        32 -> 63         : 0        |                                        |
        64 -> 127        : 0        |                                        |
       128 -> 255        : 0        |                                        |
       256 -> 511        : 0        |                                        |
       512 -> 1023       : 0        |                                        |
      1024 -> 2047       : 0        |                                        |
      2048 -> 4095       : 0        |                                        |
      4096 -> 8191       : 0        |                                        |
      8192 -> 16383      : 0        |                                        |
     16384 -> 32767      : 0        |                                        |
     32768 -> 65535      : 0        |                                        |
     65536 -> 131071     : 0        |                                        |
    131072 -> 262143     : 0        |                                        |
    262144 -> 524287     : 0        |                                        |
    524288 -> 1048575    : 0        |                                        |
   1048576 -> 2097151    : 0        |                                        |
   2097152 -> 4194303    : 0        |                                        |
   4194304 -> 8388607    : 0        |                                        |
   8388608 -> 16777215   : 0        |                                        |
  16777216 -> 33554431   : 0        |                                        |
  33554432 -> 67108863   : 0        |                                        |
  67108864 -> 134217727  : 0        |                                        |
 134217728 -> 268435455  : 0        |                                        |
 268435456 -> 536870911  : 0        |                                        |
 536870912 -> 1073741823 : 0        |                                        |
1073741824 -> 2147483647 : 0        |                                        |
2147483648 -> 4294967295 : 1        |*************                           |
4294967296 -> 8589934591 : 3        |****************************************|
`,
	},
}

func slotsOf(m map[int]uint64) []uint64 {
	s := make([]uint64, Log2Slots)
	for i, v := range m {
		s[i] = v
	}
	return s
}

func TestLog2HistText(t *testing.T) {
	for _, c := range histCases {
		got := string(AppendLog2Hist([]byte("x"), slotsOf(c.slots), c.label))
		if got != "x"+c.want {
			t.Errorf("%s:\ngot\n%s\nwant\n%s", c.name, got[1:], c.want)
		}
	}
}

func TestLog2HistEmpty(t *testing.T) {
	if got := AppendLog2Hist(nil, make([]uint64, Log2Slots), "usecs"); len(got) != 0 {
		t.Errorf("empty histogram printed %q", got)
	}
	if got := Log2Buckets(make([]uint64, Log2Slots)); got != nil {
		t.Errorf("empty histogram has buckets %v", got)
	}
}

// Counts beyond 32 bits and the last slot: no wrap in the bar's scaling,
// and slot 63's high end is the largest uint64.
func TestLog2HistExtremes(t *testing.T) {
	s := make([]uint64, Log2Slots)
	s[62], s[63] = 1<<62, 1<<63
	got := string(AppendLog2Hist(nil, s, "nsecs"))
	want62 := " 4611686018427387904 -> 9223372036854775807  : 4611686018427387904 |**********          |\n"
	want63 := " 9223372036854775808 -> 18446744073709551615 : 9223372036854775808 |********************|\n"
	if len(got) < len(want62)+len(want63) || got[len(got)-len(want62)-len(want63):] != want62+want63 {
		t.Errorf("last rows:\n%s", got)
	}
}

func TestLog2Buckets(t *testing.T) {
	got := Log2Buckets(slotsOf(map[int]uint64{0: 2, 2: 20, 4: 3}))
	want := []Bucket{{0, 1, 2}, {2, 3, 0}, {4, 7, 20}, {8, 15, 0}, {16, 31, 3}}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("bucket %d: got %v, want %v", i, got[i], want[i])
		}
	}
	b, err := json.Marshal(got[:3])
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `[{"low":0,"high":1,"count":2},{"low":2,"high":3,"count":0},{"low":4,"high":7,"count":20}]` {
		t.Errorf("JSON: %s", b)
	}
}
