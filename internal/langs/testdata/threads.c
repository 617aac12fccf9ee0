/* Test program of uthreads -l c: "threads N" starts N threads running
 * owl_worker, each naming itself owl-w<i>, and joins them. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static void *owl_worker(void *arg)
{
	char name[16];

	snprintf(name, sizeof(name), "owl-w%ld", (long)arg);
	pthread_setname_np(pthread_self(), name);
	return arg;
}

int main(void)
{
	char line[64];
	pthread_t t[64];
	int n, i;

	setvbuf(stdout, NULL, _IOLBF, 0);
	puts("ready");
	while (fgets(line, sizeof(line), stdin)) {
		if (sscanf(line, "threads %d", &n) != 1 || n < 1 || n > 64) {
			puts("?");
			continue;
		}
		for (i = 0; i < n; i++)
			if (pthread_create(&t[i], NULL, owl_worker, (void *)(long)i))
				return 1;
		for (i = 0; i < n; i++)
			pthread_join(t[i], NULL);
		printf("threads %d\n", n);
	}
	return 0;
}
