/* A shared library with a USDT probe: owl usdt -p finds it through the
 * process's mappings. */
#include <sys/sdt.h>

__attribute__((noinline)) long owllib_call(long x)
{
	DTRACE_PROBE2(owllib, call, x, x * 3);
	return x + 1;
}
