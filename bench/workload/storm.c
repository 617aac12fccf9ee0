/* The workload of `go run ./bench`: for each line "K RATE" read on stdin it
 * makes K system calls of one kind (RATE per second, 0 = as fast as it can)
 * and prints how long the loop took in ns: wall time, then the thread's CPU
 * time (which a loaded machine's run queue does not inflate; BPF programs
 * run in the calling thread, so their cost is in it). One process per run, one thread.
 *   storm setuid          setuid(0) (root: succeeds, changes nothing)
 *   storm openat PATH     openat of PATH, which does not exist (fails)
 *   storm exec PATH       fork, execve(PATH), wait
 *   storm funcs           the call fn_000() (for uprobes; fn_000..fn_999 exist)
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long clock_ns(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static long long now_ns(void) { return clock_ns(CLOCK_MONOTONIC); }

#define F(n) __attribute__((noinline)) long fn_##n(long x) { asm volatile(""); return x + 1; }
#define F10(p) F(p##0) F(p##1) F(p##2) F(p##3) F(p##4) F(p##5) F(p##6) F(p##7) F(p##8) F(p##9)
#define F100(p) F10(p##0) F10(p##1) F10(p##2) F10(p##3) F10(p##4) F10(p##5) F10(p##6) F10(p##7) F10(p##8) F10(p##9)
F100(0) F100(1) F100(2) F100(3) F100(4) F100(5) F100(6) F100(7) F100(8) F100(9)

static const char *arg; /* exec: the program; openat: the path */

static void once(const char *mode)
{
	switch (mode[0]) {
	case 's':
		syscall(SYS_setuid, 0);
		break;
	case 'o':
		syscall(SYS_openat, AT_FDCWD, arg, O_RDONLY);
		break;
	case 'e': {
		pid_t pid = fork();
		if (pid == 0) {
			/* argv on the child's stack, written so its page is present:
			 * tracers that read argv at sys_enter_execve see it, as they
			 * would a shell's (a page not yet faulted in reads as
			 * nothing, and bpftrace's execsnoop.bt then prints no line). */
			char arg0[256];
			char *argv[] = {arg0, NULL};
			snprintf(arg0, sizeof(arg0), "%s", arg);
			execv(arg, argv);
			_exit(127);
		}
		waitpid(pid, NULL, 0);
		break;
	}
	case 'f':
		fn_000(1);
		break;
	}
}

int main(int argc, char **argv)
{
	long long k, rate;
	if (argc < 2)
		return 2;
	if ((argv[1][0] == 'e' || argv[1][0] == 'o') && argc < 3)
		return 2;
	arg = argc > 2 ? argv[2] : NULL;
	setvbuf(stdout, NULL, _IOLBF, 0);
	while (scanf("%lld %lld", &k, &rate) == 2) {
		long long start = now_ns(), cpu = clock_ns(CLOCK_THREAD_CPUTIME_ID);
		for (long long i = 0; i < k; i++) {
			/* Paced: every 64 calls, wait for the time they were due. */
			if (rate > 0 && (i & 63) == 0) {
				long long due = start + i * 1000000000LL / rate;
				while (now_ns() < due)
					;
			}
			once(argv[1]);
		}
		printf("%lld %lld\n", now_ns() - start, clock_ns(CLOCK_THREAD_CPUTIME_ID) - cpu);
	}
	return 0;
}
