package uflow

//go:generate go tool bpf2go -cc clang-14 -cflags "-O2 -g -Wall -Werror" -target amd64,arm64 -type event uflow uflow.bpf.c -- -I../../../bpf
