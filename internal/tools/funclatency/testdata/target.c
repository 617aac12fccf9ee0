/* The C program of funclatency's tests. It sleeps, works and recurses as
 * its arguments say, so that each test knows how many calls of which
 * length it made:
 *
 *	sleep MS...   sleep_ms(MS) for each MS
 *	rec CHAINS    CHAINS times rec(4): each level sleeps 2 ms then recurses,
 *	              so level n lasts 2(n+1) ms
 *	work N        work(i) for i in 0..N-1
 *	threads T R   R rounds of T threads that each call hold() once, all
 *	              inside it at once (it waits on a barrier of T)
 *	wait ...      the above once a line is read from stdin
 *
 * It runs as a real-time task (SCHED_FIFO, as root) so that sleeps mostly
 * end on time, and it measures every sleep_ms and rec call itself around
 * the call (CLOCK_MONOTONIC, the kernel's ktime): its second output line
 * has those durations in ns, which checkSlots holds the histograms to.
 * Built with -O1 -fno-omit-frame-pointer -fno-inline. */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static long long durs[4096];
static int ndurs;

static long long now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void took(long long t0)
{
	long long d = now() - t0;
	if (ndurs < 4096)
		durs[ndurs++] = d;
}

void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts))
		;
}

int rec(int n)
{
	long long t0;
	int r;

	sleep_ms(2);
	if (!n)
		return 0;
	t0 = now();
	r = rec(n - 1);
	took(t0);
	return r + 1;
}

long work(long i)
{
	return i * 2 + 1;
}

static pthread_barrier_t barrier;

long hold(long i)
{
	pthread_barrier_wait(&barrier);
	return i;
}

static void *holder(void *arg)
{
	return (void *)hold((long)arg);
}

/* R rounds of T threads in hold() at once. */
static long threads(int t, int r)
{
	pthread_t tids[1024];
	long sum = 0;

	if (t > 1024)
		t = 1024;
	for (int round = 0; round < r; round++) {
		pthread_barrier_init(&barrier, NULL, t);
		for (long i = 0; i < t; i++)
			if (pthread_create(&tids[i], NULL, holder, (void *)i))
				exit(3);
		for (int i = 0; i < t; i++) {
			void *ret;
			pthread_join(tids[i], &ret);
			sum += (long)ret;
		}
		pthread_barrier_destroy(&barrier);
	}
	return sum;
}

int main(int argc, char **argv)
{
	struct sched_param sp = { .sched_priority = 10 };
	long sum = 0;

	if (argc < 2)
		return 2;
	if (sched_setscheduler(0, SCHED_FIFO, &sp))
		perror("sched_setscheduler");
	if (!strcmp(argv[1], "wait")) {
		int c;
		while ((c = getchar()) != EOF && c != '\n')
			;
		argv++;
		argc--;
	}
	if (!strcmp(argv[1], "sleep")) {
		for (int i = 2; i < argc; i++) {
			long long t0 = now();
			sleep_ms(atoi(argv[i]));
			took(t0);
		}
	} else if (!strcmp(argv[1], "rec")) {
		for (int i = 0; i < atoi(argv[2]); i++) {
			long long t0 = now();
			sum += rec(4);
			took(t0);
		}
	} else if (!strcmp(argv[1], "threads")) {
		sum = threads(atoi(argv[2]), atoi(argv[3]));
	} else if (!strcmp(argv[1], "work")) {
		for (long i = 0; i < atol(argv[2]); i++)
			sum += work(i);
	}
	printf("%ld\n", sum);
	for (int i = 0; i < ndurs; i++)
		printf("%s%lld", i ? " " : "", durs[i]);
	printf("\n");
	return 0;
}
