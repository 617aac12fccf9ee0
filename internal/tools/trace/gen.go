package trace

//go:generate go tool bpf2go -cc clang-14 -cflags "-O2 -g -Wall -Werror" -target amd64,arm64 -type event -type func_desc -type entry_key trace trace.bpf.c -- -I../../../bpf
