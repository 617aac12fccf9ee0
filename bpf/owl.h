/* Shared by every owl BPF program: the event ring, its drop counter and the
 * pid filter. Include it first; it pulls in vmlinux.h and libbpf's helpers. */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6

/* The ring's size, defined before including this file to change it. The
 * reader maps it twice (RSS grows by 2x its size at start), so the default
 * suits tools of network rate; tools fed by syscalls that a loop can call
 * 300k times a second take 4 MiB: a setuid storm outran 256 KiB whenever
 * the reader was off the CPU for ~10 ms (bench/setuids). */
#ifndef OWL_RINGBUF_BYTES
#define OWL_RINGBUF_BYTES (1024 * 1024)
#endif

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, OWL_RINGBUF_BYTES);
} events SEC(".maps");

/* Events the ring had no room for. User space reads it on exit: a full ring
 * must never lose events silently. */
__u64 owl_lost = 0;

/* Process (tgid) to trace; 0 traces all. Set from Go before load. */
const volatile __u32 targ_tgid = 0;

static __always_inline bool owl_tgid_wanted(__u32 tgid)
{
	return targ_tgid == 0 || targ_tgid == tgid;
}

static __always_inline void *owl_reserve(__u64 size)
{
	void *e = bpf_ringbuf_reserve(&events, size, 0);

	if (!e)
		__sync_fetch_and_add(&owl_lost, 1);
	return e;
}

/* Copies one event into the ring, counting it as lost when there is no room. */
static __always_inline void owl_emit(const void *e, __u64 size)
{
	if (bpf_ringbuf_output(&events, (void *)e, size, 0))
		__sync_fetch_and_add(&owl_lost, 1);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
