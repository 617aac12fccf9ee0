// A process for the symbolization tests: it prints the runtime addresses
// of functions (so the test knows them independently of the resolver),
// then blocks reading stdin until the test ends.
#include <dlfcn.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

__attribute__((noinline)) int owl_test_target(int n) {
	volatile int s = 0;
	for (int i = 0; i < n; i++)
		s += i * i;
	return s;
}

int main(void) {
	// Anonymous executable memory, as a JIT would use; the test names it
	// in /tmp/perf-PID.map.
	void *jit = mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	void *vdso = NULL;
	void *h = dlopen("linux-vdso.so.1", RTLD_LAZY | RTLD_NOLOAD);
	if (h)
		vdso = dlsym(h, "__vdso_clock_gettime");
	printf("owl_test_target %p\n", (void *)owl_test_target);
	printf("getpid %p\n", (void *)getpid);
	printf("jit %p\n", jit == MAP_FAILED ? NULL : jit);
	printf("vdso %p\n", vdso);
	printf("ready\n");
	fflush(stdout);
	owl_test_target(3);
	getchar();
	return 0;
}
