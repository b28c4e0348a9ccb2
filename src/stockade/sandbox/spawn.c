/*
 * libstockade-spawn: start bubblewrap as a slot's uid with no exec in between.
 *
 * As root, the supervisor must start bwrap as the slot's unprivileged uid,
 * inside the box's cgroup, in the slot's network namespace, under the run's
 * rlimits. stockade-launch (launch.c) does those steps and execs bwrap: one
 * more exec per box (~0.4 ms of wall on the project machine). Here the same
 * steps run in a vfork child, which then execs bwrap directly. Loaded with
 * ctypes by spawn.py; built by `make setup` (without it, the launcher does it).
 *
 * The child shares the caller's memory until it execs, so it only makes
 * system calls and writes the failure record the caller gave it. The cgroup
 * and identity steps are launch.c's own (steps.h), in raw system calls.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "steps.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

/* Where a failed start stopped; what the caller reports. */
enum step {
    STEP_NONE,
    STEP_NETNS,
    STEP_CGROUP,
    STEP_RLIMIT,
    STEP_GROUPS,
    STEP_GID,
    STEP_UID,
    STEP_CHECK,
    STEP_FDS,
    STEP_CHDIR,
    STEP_SIGNALS,
    STEP_EXEC,
};

struct failure {
    int step;
    int error;
    int index; /* which cgroup file or rlimit */
};

/* Everything the child does before exec; returns only on failure. */
static void child(const char *path, char *const argv[], char *const envp[], const int stdio[3],
                  const int *keep, int nkeep, int netns_fd, const char *const *cgroup_procs, int ncgroups,
                  const int *rl_resource, const unsigned long long *rl_soft,
                  const unsigned long long *rl_hard, int nrl, unsigned uid, unsigned gid,
                  const sigset_t *old_mask, struct failure *failure) {
    /* Python's handlers must not run here, and what it ignores (SIGPIPE,
     * SIGXFSZ) must not stay ignored in the box: SIGXFSZ enforces the file
     * size limit. Default for every signal (the raw call: glibc's sigaction
     * refuses its own two, 32 and 33, which an ignoring parent would pass
     * on), then the caller's mask back. */
#if defined(__x86_64__) || defined(__aarch64__)
    struct { /* the kernel's struct sigaction on these two */
        void *handler;
        unsigned long flags;
        void *restorer;
        unsigned long mask;
    } dfl = {SIG_DFL, 0, NULL, 0};
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            syscall(SYS_rt_sigaction, sig, &dfl, NULL, sizeof dfl.mask);
#else
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            sigaction(sig, &dfl, NULL); /* (not glibc's own two: it refuses them) */
#endif
    if (sigprocmask(SIG_SETMASK, old_mask, NULL)) {
        failure->step = STEP_SIGNALS;
        goto fail;
    }
    if (netns_fd >= 0 && setns(netns_fd, CLONE_NEWNET)) {
        failure->step = STEP_NETNS;
        goto fail;
    }
    /* Still root: the cgroup files belong to root. */
    for (int i = 0; i < ncgroups; i++) {
        failure->index = i;
        if (join_cgroup(cgroup_procs[i])) {
            failure->step = STEP_CGROUP;
            goto fail;
        }
    }
    for (int i = 0; i < nrl; i++) {
        failure->index = i;
        struct rlimit limit = {rl_soft[i], rl_hard[i]};
        if (syscall(SYS_prlimit64, 0, rl_resource[i], &limit, NULL)) {
            failure->step = STEP_RLIMIT;
            goto fail;
        }
    }
    switch (become(uid, gid)) {
    case BECOME_OK:
        break;
    case BECOME_GROUPS:
        failure->step = STEP_GROUPS;
        goto fail;
    case BECOME_GID:
        failure->step = STEP_GID;
        goto fail;
    case BECOME_UID:
        failure->step = STEP_UID;
        goto fail;
    default: /* refused (uid or gid 0) or not for good */
        failure->step = STEP_CHECK;
        goto fail;
    }
    /* Descriptors: the three standard ones, the kept ones, nothing else. */
    for (int target = 0; target < 3; target++)
        if (dup2(stdio[target], target) != target) {
            failure->step = STEP_FDS;
            goto fail;
        }
    if (syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC)) {
        failure->step = STEP_FDS;
        goto fail;
    }
    for (int i = 0; i < nkeep; i++)
        if (fcntl(keep[i], F_SETFD, 0)) {
            failure->index = i;
            failure->step = STEP_FDS;
            goto fail;
        }
    if (chdir("/")) {
        failure->step = STEP_CHDIR;
        goto fail;
    }
    execve(path, argv, envp);
    failure->step = STEP_EXEC;
fail:
    failure->error = errno ? errno : EINVAL;
}

/*
 * Start `path` (argv, envp) as uid/gid (both non-zero), stdin/stdout/stderr
 * from stdio[], the `keep` descriptors open (every other one closed), after
 * joining the network namespace open on netns_fd (unless -1), writing "0" to
 * each cgroup.procs file, and setting the rlimits. Returns the child's pid;
 * or -1 with *failure saying which step failed and its errno (the child has
 * then been reaped).
 */
int stockade_spawn(const char *path, char *const argv[], char *const envp[], const int stdio[3],
                   const int *keep, int nkeep, int netns_fd, const char *const *cgroup_procs, int ncgroups,
                   const int *rl_resource, const unsigned long long *rl_soft, const unsigned long long *rl_hard,
                   int nrl, unsigned uid, unsigned gid, struct failure *failure) {
    memset(failure, 0, sizeof *failure);
    for (int i = 0; i < 3; i++)
        if (stdio[i] < 3) { /* dup2 onto 0-2 must not clobber another source */
            failure->step = STEP_FDS;
            failure->error = EBADF;
            return -1;
        }
    /* No signal handler may run in the child before it has reset them. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t pid = vfork();
    if (pid == 0) {
        child(path, argv, envp, stdio, keep, nkeep, netns_fd, cgroup_procs, ncgroups, rl_resource, rl_soft,
              rl_hard, nrl, uid, gid, &old, failure);
        _exit(127);
    }
    int saved = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (pid < 0) {
        failure->step = STEP_NONE;
        failure->error = saved;
        return -1;
    }
    if (failure->error) { /* the child stopped before exec: reap it */
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        return -1;
    }
    return pid;
}
