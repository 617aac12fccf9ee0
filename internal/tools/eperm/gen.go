package eperm

//go:generate go tool bpf2go -cc clang-14 -cflags "-O2 -g -Wall -Werror" -target amd64,arm64 -type event -type fail_key -type fail_count eperm eperm.bpf.c -- -I../../../bpf
