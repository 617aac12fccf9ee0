/* USDT probes of several argument kinds, fired a known number of times.
 * Built with -O2 so that the compiler picks varied operand forms
 * (registers, a constant, memory through a pointer and a global).
 *
 * stdin: "go N" fires owltest:args, owltest:guarded (only while its
 * semaphore is set, as a *_ENABLED() test does) and the library's
 * owllib:call N times (generation counts the go lines), then prints "fired N guarded G sema S". EOF ends. */
#define _SDT_HAS_SEMAPHORES 1
#include <sys/sdt.h>
#include <stdio.h>

/* One semaphore per probe of this file, as dtrace -G would make them. */
unsigned short owltest_args_semaphore __attribute__((section(".probes"), used));
unsigned short owltest_guarded_semaphore __attribute__((section(".probes"), used));

long owllib_call(long x);

struct item {
	long id;
	int weight;
};

long counter = 1000;
long generation; /* a global the probe reads from memory (sym(%rip)) */

__attribute__((noinline)) static int fire(int i, const char *name, struct item *it)
{
	int guarded = 0;

	DTRACE_PROBE5(owltest, args, i, -i, name, 42, it->weight);
	counter++;
	if (__builtin_expect(owltest_guarded_semaphore, 0)) {
		DTRACE_PROBE3(owltest, guarded, it->id, counter, generation);
		guarded = 1;
	}
	return guarded;
}

int main(void)
{
	char line[64];
	int n;

	setvbuf(stdout, NULL, _IOLBF, 0);
	while (fgets(line, sizeof(line), stdin)) {
		int guarded = 0;

		if (sscanf(line, "go %d", &n) != 1)
			continue;
		generation++;
		for (int i = 1; i <= n; i++) {
			char name[16];
			struct item it = {.id = 100 + i, .weight = -10 * i};

			snprintf(name, sizeof(name), "item-%d", i);
			guarded += fire(i, name, &it);
			owllib_call(i);
		}
		printf("fired %d guarded %d sema %d\n", n, guarded, owltest_guarded_semaphore);
	}
	return 0;
}
