// An x32 system call (__X32_SYSCALL_BIT | nr): another ABI the filter must kill, not allow.
// expect: status=runtime_error signal=31
// stdout-contains: before
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void) {
    printf("before\n");
    fflush(stdout);
    long ret = syscall(0x40000000L | 39);  /* x32 getpid */
    printf("LEAK: x32 getpid returned %ld (%s)\n", ret, strerror(errno));
    return 0;
}
