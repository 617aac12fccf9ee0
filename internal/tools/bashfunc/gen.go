package bashfunc

//go:generate go tool bpf2go -cc clang-14 -cflags "-O2 -g -Wall -Werror" -target amd64,arm64 -type event -type call_key -type name_key -type hist bashfunc bashfunc.bpf.c -- -I../../../bpf
