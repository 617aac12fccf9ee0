package capable

//go:generate go tool bpf2go -cc clang-14 -cflags "-O2 -g -Wall -Werror" -target amd64,arm64 -type event -type exec_event capable capable.bpf.c -- -I../../../bpf
