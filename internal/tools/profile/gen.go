package profile

//go:generate go tool bpf2go -cc clang-14 -cflags "-O2 -g -Wall -Werror" -target amd64,arm64 profile profile.bpf.c -- -I../../../bpf
