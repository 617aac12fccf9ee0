/* stackcount's C test program: for each line on stdin, main calls loop,
 * which calls work N times (N is the argument); then it prints "done" and
 * the running sum. It exits at the end of its input. Built by the tests
 * with gcc -O1 -fno-omit-frame-pointer -fno-inline: work is a leaf without
 * a frame of its own, whose caller a plain frame-pointer walk at its entry
 * would miss. */
#include <stdio.h>
#include <stdlib.h>

int work(int i)
{
	return i * 2 + 1;
}

long loop(int n)
{
	long sum = 0;

	for (int i = 0; i < n; i++)
		sum += work(i);
	return sum;
}

int main(int argc, char **argv)
{
	char line[16];
	int n = argc > 1 ? atoi(argv[1]) : 1000;
	long sum = 0;

	while (fgets(line, sizeof(line), stdin)) {
		sum += loop(n);
		printf("done %ld\n", sum);
		fflush(stdout);
	}
	return 0;
}
