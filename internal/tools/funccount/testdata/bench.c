/* funccount's benchmark program: after a line on stdin, calls work(i)
 * argv[1] times and prints the nanoseconds the loop took. Built with
 * gcc -O1 -fno-inline like work.c. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int work(int i)
{
	return i * 2 + 1;
}

int main(int argc, char **argv)
{
	struct timespec a, b;
	char line[16];
	long n, sum = 0;

	if (argc != 2 || !fgets(line, sizeof(line), stdin))
		return 2;
	n = atol(argv[1]);
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (long i = 0; i < n; i++)
		sum += work(i);
	clock_gettime(CLOCK_MONOTONIC, &b);
	printf("%ld %ld\n", (b.tv_sec - a.tv_sec) * 1000000000L + (b.tv_nsec - a.tv_nsec), sum);
	return 0;
}
