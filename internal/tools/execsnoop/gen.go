package execsnoop

//go:generate go tool bpf2go -cc clang-14 -cflags "-O2 -g -Wall -Werror" -target amd64,arm64 -type event -type stdio_sock execsnoop execsnoop.bpf.c -- -I../../../bpf
