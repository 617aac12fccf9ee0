/* The malloc program of funccount's tests: prints "ready", waits for
 * SIGUSR1, then calls malloc exactly argv[1] times (and free as often),
 * prints "done" and waits until stdin closes. Output goes through write(2)
 * and nothing else allocates after the signal, so the count is exact.
 * Built with -fno-builtin so that GCC keeps every malloc. */
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

static volatile sig_atomic_t go;
static void *volatile keep[16];

static void on_usr1(int sig)
{
	(void)sig;
	go = 1;
}

int main(int argc, char **argv)
{
	struct sigaction sa = { 0 };
	sigset_t block, old;
	char c;
	int n;

	if (argc != 2)
		return 2;
	n = atoi(argv[1]);
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigprocmask(SIG_BLOCK, &block, &old);
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	write(1, "ready\n", 6);
	while (!go)
		sigsuspend(&old);
	for (int i = 0; i < n; i++) {
		keep[i % 16] = malloc(32 + i % 64);
		free(keep[i % 16]);
	}
	write(1, "done\n", 5);
	while (read(0, &c, 1) > 0)
		;
	return 0;
}
