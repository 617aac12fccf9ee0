/* Calls chroot("/") from a named function, for the -U test. The syscall is
 * inline so that the function itself is the innermost user frame (a libc
 * wrapper without a frame would hide its caller from frame-pointer
 * unwinding). Build: gcc -O0 -fno-omit-frame-pointer. */
#include <stdio.h>
#include <unistd.h>
#include <sys/syscall.h>

__attribute__((noinline)) long owl_chroot_caller(const char *dir)
{
	long ret;

	__asm__ volatile("syscall" : "=a"(ret) : "a"(SYS_chroot), "D"(dir) : "rcx", "r11", "memory");
	return ret;
}

int main(void)
{
	char line[8];

	/* Wait until the tracer is attached, then again until the test has
	 * read our maps, so the user stack can be symbolized. */
	if (!fgets(line, sizeof(line), stdin))
		return 1;
	long ret = owl_chroot_caller("/");
	printf("%ld\n", ret);
	fflush(stdout);
	fgets(line, sizeof(line), stdin);
	return ret != 0;
}
