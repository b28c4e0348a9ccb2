/* expect: ok — every call below fails; the program prints "ALLOWED name" for any that works. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/bpf.h>

static void check(const char *name, long rc) {
    if (rc >= 0) printf("ALLOWED %s\n", name);
    else printf("denied %s errno=%d\n", name, errno);
}

int main(void) {
    char buf[64] = {0};
    check("unshare(user)", unshare(CLONE_NEWUSER));
    check("unshare(net)", unshare(CLONE_NEWNET));
    check("mount", mount("none", "/tmp", "tmpfs", 0, NULL));
    check("umount", umount2("/box", MNT_DETACH));
    check("chroot", chroot("/tmp"));
    check("ptrace(attach 1)", ptrace(PTRACE_ATTACH, 1, 0, 0));
    check("keyctl", syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3, 0));
    check("add_key", syscall(SYS_add_key, "user", "x", "y", 1, -3));
    union bpf_attr attr; memset(&attr, 0, sizeof attr);
    check("bpf", syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr));
    check("perf_event_open", syscall(SYS_perf_event_open, buf, 0, -1, -1, 0));
    check("userfaultfd", syscall(SYS_userfaultfd, 0));
    check("io_uring_setup", syscall(SYS_io_uring_setup, 1, buf));
    check("socket(AF_INET)", socket(AF_INET, SOCK_STREAM, 0));
    check("socket(AF_PACKET)", socket(17 /* AF_PACKET */, SOCK_RAW, 0));
    check("setns", syscall(SYS_setns, 0, 0));
    check("kexec_load", syscall(SYS_kexec_load, 0, 0, 0, 0));
    check("init_module", syscall(SYS_init_module, buf, 1, ""));
    check("pivot_root", syscall(SYS_pivot_root, "/tmp", "/tmp"));
    printf("done\n");
    return 0;
}
