/*
 * The steps before bubblewrap, as root, shared by stockade-launch (launch.c)
 * and libstockade-spawn (spawn.c): move into a box's cgroup, become a slot's
 * uid. Raw system calls only: spawn.c takes them in a vfork child of a
 * multi-threaded process, where glibc's setresuid() would signal the threads
 * of the process it believes it is (the caller's) to change theirs too.
 * Each returns 0, or the failed step (errno set).
 */
#ifndef STOCKADE_STEPS_H
#define STOCKADE_STEPS_H

#include <errno.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Move this process into the cgroup whose cgroup.procs file is `path`. */
static int join_cgroup(const char *path) {
    int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -1;
    int ok = write(fd, "0", 1) == 1;
    close(fd);
    return ok ? 0 : -1;
}

enum become_step { BECOME_OK, BECOME_REFUSED, BECOME_GROUPS, BECOME_GID, BECOME_UID, BECOME_CHECK };

/* Become uid/gid for good, with no supplementary groups. Never uid or gid 0:
 * a user namespace made by root maps its user to host uid 0, which can still
 * write host files such as kernel.core_pattern. */
static enum become_step become(long long uid, long long gid) {
    if (uid <= 0 || gid <= 0 || uid > 0xfffffffeLL || gid > 0xfffffffeLL) {
        errno = EINVAL;
        return BECOME_REFUSED;
    }
    /* Groups first: after setresuid they could no longer be dropped. */
    if (syscall(SYS_setgroups, 0, NULL))
        return BECOME_GROUPS;
    if (syscall(SYS_setresgid, gid, gid, gid))
        return BECOME_GID;
    if (syscall(SYS_setresuid, uid, uid, uid))
        return BECOME_UID;
    uid_t r, e, s;
    gid_t rg, eg, sg;
    if (syscall(SYS_getresuid, &r, &e, &s) || syscall(SYS_getresgid, &rg, &eg, &sg) || r != uid || e != uid ||
        s != uid || rg != gid || eg != gid || sg != gid || syscall(SYS_getgroups, 0, NULL) != 0 ||
        syscall(SYS_setresuid, 0, 0, 0) == 0) { /* root may not come back (a kernel ignoring the drop) */
        errno = EPERM;
        return BECOME_CHECK;
    }
    return BECOME_OK;
}

#endif
