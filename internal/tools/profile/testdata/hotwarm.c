/* A CPU-bound program for profile's tests: about 70 % of its time in hot()
 * and 30 % in warm(), both called from spin(). It runs until killed; the
 * argument bounds it (seconds) so a test that dies leaves nothing behind. */
#include <stdlib.h>
#include <time.h>

volatile unsigned long sink;

void hot(void)
{
	for (int i = 0; i < 7000; i++)
		sink += i * sink;
}

void warm(void)
{
	for (int i = 0; i < 3000; i++)
		sink += i * sink;
}

void spin(void)
{
	hot();
	warm();
}

int main(int argc, char **argv)
{
	time_t end = time(NULL) + (argc > 1 ? atoi(argv[1]) : 60);

	while (time(NULL) < end)
		for (int i = 0; i < 1000; i++)
			spin();
	return 0;
}
