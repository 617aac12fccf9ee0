package execwatch

//go:generate go tool bpf2go -cc clang-14 -cflags "-O2 -g -Wall -Werror" -target amd64,arm64 execwatch execwatch.bpf.c -- -I../../bpf
