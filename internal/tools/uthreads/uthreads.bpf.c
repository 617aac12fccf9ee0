//go:build ignore

/* uthreads: one event per thread start or stop of a language runtime
 * (hotspot thread__start/stop), with the thread's name and ids. Each
 * location's cookie (langs.Cookie) says start or stop and which
 * arguments hold the ids and the name. */
#include "owl.h"
#include "usdt.h"

#define NAME_LEN 80

struct event {
	struct owl_task task;
	__u64 ids[2];	/* runtime id, native id */
	__u32 role;	/* 1 start, 2 stop */
	__u32 pad;
	char name[NAME_LEN];
};

const struct event *unused_event __attribute__((unused));

SEC("uprobe")
int uthreads_hit(struct pt_regs *ctx)
{
	const struct usdt_spec *spec;
	struct event *e;
	__u8 a;

	if (!owl_task_wanted())
		return 0;
	spec = usdt_spec(ctx);
	if (!spec)
		return 0;
	e = owl_reserve(sizeof(*e));
	if (!e)
		return 0;
	owl_task_fill(&e->task);
	e->role = usdt_cookie_byte(spec, 0);
	a = usdt_cookie_byte(spec, 2);
	if (a != USDT_NONE)
		usdt_arg(ctx, spec, a, &e->ids[0]);
	a = usdt_cookie_byte(spec, 3);
	if (a != USDT_NONE)
		usdt_arg(ctx, spec, a, &e->ids[1]);
	usdt_str(ctx, spec, usdt_cookie_byte(spec, 4), usdt_cookie_byte(spec, 5), e->name, NAME_LEN);
	bpf_ringbuf_submit(e, 0);
	return 0;
}
