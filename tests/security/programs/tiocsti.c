// TIOCSTI pushes bytes into a terminal's input (typed by whoever reads it next). Tried on
// 0/1/2, on a pty made the controlling terminal, on /dev/tty, and with the upper 32 bits of
// the command set (CVE-2019-10063): all must fail with EPERM from the seccomp filter
// (where the box has ptys at all: bwrap's own --dev, rootless).
// TIOCLINUX likewise.
// expect: status=ok
// stdout-contains: DONE
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void probe(const char *what, int fd, unsigned long cmd, void *arg) {
    errno = 0;
    long r = syscall(SYS_ioctl, fd, cmd, arg);
    if (r == -1 && errno == EPERM)
        printf("DENIED %s: EPERM\n", what);
    else
        printf("LEAK: %s returned %ld (%s): not stopped by seccomp\n", what, r, strerror(errno));
}

int main(void) {
    char c = 'x';
    probe("TIOCSTI fd 0", 0, TIOCSTI, &c);
    probe("TIOCSTI fd 1", 1, TIOCSTI, &c);
    probe("TIOCSTI fd 2", 2, TIOCSTI, &c);
    int tty = open("/dev/tty", O_RDWR);
    if (tty >= 0) {
        probe("TIOCSTI /dev/tty", tty, TIOCSTI, &c);
        close(tty);
    } else {
        printf("no /dev/tty (%s)\n", strerror(errno));
    }
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0 || grantpt(master) || unlockpt(master)) {
        // A box whose /dev is root's prepared one (sandbox/devtree.py) has no
        // ptmx: there is no terminal at all to push input into.
        printf("no pty in this box (%s)\n", strerror(errno));
        puts("DONE");
        return 0;
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        setsid();
        int slave = open(ptsname(master), O_RDWR);
        if (slave < 0 || ioctl(slave, TIOCSCTTY, 0) != 0)
            printf("cannot make the pty our terminal (%s)\n", strerror(errno));
        probe("TIOCSTI pty", slave, TIOCSTI, &c);
        probe("TIOCSTI pty, high bits set", slave, 0xffffffff00000000UL | TIOCSTI, &c);
        probe("TIOCSTI pty master", master, TIOCSTI, &c);
        char sub[2] = {0, 0};
        probe("TIOCLINUX pty", slave, TIOCLINUX, sub);
        int ctty = open("/dev/tty", O_RDWR);
        if (ctty >= 0)
            probe("TIOCSTI controlling /dev/tty", ctty, TIOCSTI, &c);
        fflush(stdout);
        _exit(0);
    }
    waitpid(pid, NULL, 0);
    puts("DONE");
    return 0;
}
