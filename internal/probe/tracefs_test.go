package probe

import "testing"

const sampleFormat = `name: inet_sock_set_state
ID: 1633
format:
	field:unsigned short common_type;	offset:0;	size:2;	signed:0;
	field:int common_pid;	offset:4;	size:4;	signed:1;

	field:const void * skaddr;	offset:8;	size:8;	signed:0;
	field:__u16 sport;	offset:24;	size:2;	signed:0;
	field:__u8 saddr_v6[16];	offset:40;	size:16;	signed:0;
	field:enum sk_rst_reason reason;	offset:28;	size:4;	signed:0;

print fmt: "x=%d", REC->sport
`

func TestParseFormat(t *testing.T) {
	got := parseFormat(sampleFormat)
	want := map[string]int{"common_type": 0, "common_pid": 4, "skaddr": 8, "sport": 24, "saddr_v6": 40, "reason": 28}
	if len(got) != len(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %d, want %d", k, got[k], v)
		}
	}
}
