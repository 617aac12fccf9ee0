//go:build ignore

/* usdt: one event per hit of the USDT probes asked for, with their
 * arguments read by bpf/usdt.h's fetcher and, for the arguments the
 * format prints with %s, the strings they point to. */
#include "owl.h"
#include "usdt.h"

#define MAX_STRS 4
#define STR_LEN 128

struct event {
	struct owl_task task;
	__u32 probe;	/* the tool's index of the probe (spec cookie) */
	__u16 nargs;
	__u16 bad;	/* bit i: argument i could not be read */
	__u64 args[USDT_MAX_ARGS];
	__u8 strs[MAX_STRS][STR_LEN];
};

const struct event *unused_event __attribute__((unused));

/* str_arg[j]: the argument whose string goes to strs[j], 0xff for none. */
const volatile __u8 str_arg[MAX_STRS] = {0xff, 0xff, 0xff, 0xff};

SEC("uprobe")
int usdt_hit(struct pt_regs *ctx)
{
	const struct usdt_spec *spec;
	struct event *e;
	__u32 i;

	if (!owl_task_wanted())
		return 0;
	spec = usdt_spec(ctx);
	if (!spec)
		return 0;
	e = owl_reserve(sizeof(*e));
	if (!e)
		return 0;
	owl_task_fill(&e->task);
	e->probe = usdt_cookie(spec);
	e->nargs = spec->nargs;
	for (i = 0; i < USDT_MAX_ARGS; i++) {
		if (i >= spec->nargs)
			break;
		if (usdt_arg(ctx, spec, i, &e->args[i]))
			e->bad |= 1 << i;
	}
	for (i = 0; i < MAX_STRS; i++) {
		__u8 a = str_arg[i];

		if (a >= USDT_MAX_ARGS || (e->bad & (1 << a)))
			continue;
		/* A string the program never touched may be paged out: it
		 * prints empty rather than failing the event. */
		bpf_probe_read_user_str(e->strs[i], STR_LEN, (void *)e->args[a]);
	}
	owl_submit(e, sizeof(*e));
	return 0;
}
