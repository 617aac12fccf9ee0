/* The C program of funccount's tests (and of funclatency, trace and
 * stackcount): after a line on stdin, main calls loop, which calls
 * work(i) for i = 0..999, then sleep_ms(5) 20 times; it prints the sum of
 * work's results and exits. Built by the tests with
 * gcc -O1 -fno-omit-frame-pointer -fno-inline, so that every call is a
 * call. */
#include <stdio.h>
#include <time.h>

int work(int i)
{
	return i * 2 + 1;
}

void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

long loop(int n)
{
	long sum = 0;

	for (int i = 0; i < n; i++)
		sum += work(i);
	return sum;
}

int main(void)
{
	char line[16];
	long sum;

	if (!fgets(line, sizeof(line), stdin))
		return 1;
	sum = loop(1000);
	for (int i = 0; i < 20; i++)
		sleep_ms(5);
	printf("%ld\n", sum);
	return 0;
}
