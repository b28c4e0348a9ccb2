// clone(2) with CLONE_NEWUSER and each other CLONE_NEW* flag must fail with EPERM (a new user
// namespace hands root-only kernel code to the program); clone3 must answer ENOSYS so libc falls
// back to clone, whose flags the filter can see. unshare(1) the command must fail too.
// expect: status=ok
// stdout-contains: DONE
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void try_clone(const char *name, unsigned long flags) {
    errno = 0;
    long pid = syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
    if (pid == 0) _exit(0);  /* only reached if the filter let it through */
    if (pid > 0) {
        waitpid(pid, NULL, 0);
        printf("LEAK: clone(%s) created process %ld\n", name, pid);
    } else if (errno == EPERM) {
        printf("DENIED clone(%s): EPERM\n", name);
    } else {
        printf("LEAK: clone(%s) reached the kernel: %s\n", name, strerror(errno));
    }
}

int main(void) {
    try_clone("CLONE_NEWUSER", CLONE_NEWUSER);
    try_clone("CLONE_NEWUSER|CLONE_NEWNS", CLONE_NEWUSER | CLONE_NEWNS);
    try_clone("CLONE_NEWNS", CLONE_NEWNS);
    try_clone("CLONE_NEWPID", CLONE_NEWPID);
    try_clone("CLONE_NEWNET", CLONE_NEWNET);
    try_clone("CLONE_NEWIPC", CLONE_NEWIPC);
    try_clone("CLONE_NEWUTS", CLONE_NEWUTS);
    try_clone("CLONE_NEWCGROUP", CLONE_NEWCGROUP);
    /* clone3 with CLONE_NEWUSER in its (pointer-hidden) arguments. */
    unsigned long long args[11] = {0};
    args[0] = CLONE_NEWUSER;
    args[4] = SIGCHLD;
    errno = 0;
    long pid = syscall(435, args, sizeof args);
    if (pid == 0) _exit(0);
    if (pid == -1 && errno == ENOSYS) printf("DENIED clone3: ENOSYS\n");
    else printf("LEAK: clone3 returned %ld (%s)\n", pid, strerror(errno));
    /* The ordinary fork still works. */
    pid = fork();
    if (pid == 0) _exit(7);
    int status;
    waitpid(pid, &status, 0);
    printf("fork works: %d\n", WEXITSTATUS(status));
    fflush(stdout);
    int rc = system("unshare -U -r true 2>&1; echo unshare-exit=$?");
    (void)rc;
    puts("DONE");
    return 0;
}
