// An i386 system call (int 0x80) from a 64-bit process: the i386 ABI skips x86_64 filters on
// kernels without audit-arch checks, so the filter must kill the process outright (SIGSYS).
// expect: status=runtime_error signal=31
// stdout-contains: before
#include <stdio.h>

int main(void) {
    printf("before\n");
    fflush(stdout);
    long ret;
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(20L) : "memory");  /* i386 getpid */
    printf("LEAK: int 0x80 getpid returned %ld\n", ret);
    return 0;
}
