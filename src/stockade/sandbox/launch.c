/*
 * stockade-launch: set rlimits, maybe drop to an unprivileged uid, exec.
 *
 *   stockade-launch [--netns-fd=N] [--cgroup-procs=FILE]... [--uid=N --gid=N] [--rlimit=NAME:SOFT:HARD]... -- PROGRAM [ARG]...
 *   stockade-launch [--rlimit=NAME:SOFT:HARD]... --status-fd=N [--cpu-fd=C] -- PROGRAM [ARG]...
 *   stockade-launch --exec-fd=N [--status-fd=M [--cpu-fd=C]]
 *   stockade-launch --make-netns
 *
 * Stockade runs it twice per box, in place of two dynamically linked execs:
 *   - outside, as root: --cgroup-procs move it into the box's cgroup (one
 *     cgroup.procs file per hierarchy, in order), --rlimit set the run's
 *     rlimits, --uid/--gid switch to the slot's host uid (no supplementary
 *     groups), then it execs bubblewrap (was: setpriv), which so starts inside
 *     the box's cgroup, under the box's rlimits;
 *   - inside the box, as its first program: the --rlimit options, then it execs
 *     the user's program, which inherits them (was: util-linux prlimit).
 * Built statically against musl by `make setup`, so an exec costs neither
 * dynamic loading nor glibc's start-up (its CPU-feature probing). It builds
 * with `gcc -static` too.
 *
 * With --exec-fd it is the first program of a box started ahead of time (a
 * "warm" box): it waits for the run on fd N, then closes it. The message is
 * NUL-terminated items, each a type letter and a value: "R" NAME:SOFT:HARD (an
 * rlimit), "E" KEY=VALUE (the whole environment), "C" a directory to enter, "O"
 * (no value: the program's stderr is its stdout, one stream in write order, as
 * isolate's --stderr-to-stdout), and "A" the program and its arguments, in
 * order. EOF without any "A": exit 127.
 *
 * With --status-fd it stays, as the box's pid 1 (bwrap --as-pid-1): the program
 * runs in its child, and once it ends, its wait status (an int, as wait(2)
 * gives it) is written to fd N. bwrap only reports an exit code, and 128 + N
 * for signal N, so a program's own exit(152) read as death by SIGXCPU. The
 * program cannot forge the report: pid 1 ignores the signals its namespace
 * sends it, and being not dumpable, its memory and descriptors are out of the
 * program's reach (/proc/1/mem, /proc/1/fd; ptrace is refused by seccomp anyway).
 * Then the launcher waits for the supervisor's SIGKILL (nothing in the box can
 * send it one), which ends the box's pid namespace. Its own exit right away
 * tore the box's namespaces down (its mounts) on the CPU where the report had
 * just woken the supervisor, which waited for that: now the supervisor has the
 * result first, and ends the box after. (Not as pid 1, it exits with the code
 * bwrap would give.)
 *
 * The report is two records: the CPU time used so far and the time
 * (CLOCK_MONOTONIC), each a uint64 of ns, taken just before the fork and sent
 * just after it; once the program ends,
 * its wait status (an int), then the CPU time and the time again, and the
 * largest resident set of the program and what it started (a uint64 of bytes,
 * RUSAGE_CHILDREN's ru_maxrss once all are reaped: bwrap's own rusage is no
 * measure, its exec kept the peak of the process that spawned it). The
 * differences are the program's CPU time and wall time, and not the box's
 * setup, which ran in the same cgroup before it (bwrap's mounts, ~5 ms of CPU;
 * a warm box's long before the run). The CPU time is read from --cpu-fd,
 * the box cgroup's counter opened read-only by the supervisor (cpuacct.usage,
 * in ns, or cgroup v2's cpu.stat, its usage_usec), which counts every process
 * the program started; without one, from getrusage(RUSAGE_CHILDREN): the
 * program and the orphans we reaped. CPU_UNKNOWN if it cannot be read. The
 * program gets neither descriptor. A failure of ours before the program runs
 * is LAUNCH_FAILED (an int) in place of the records still to come.
 *
 * --cgroup-procs (root, before the uid changes) writes "0" (this process) to
 * FILE, a cgroup.procs file of the box's cgroup.
 *
 * --netns-fd (root, before the uid changes) joins the network namespace open
 * on fd N, and closes it: a slot's own loopback-only namespace, made once by
 * --make-netns, which creates it, brings its loopback up, prints "ready" and
 * waits for EOF on stdin while the supervisor opens /proc/PID/ns/net.
 *
 * It parses only what Stockade's supervisor writes (numbers and fixed names;
 * user input only ever appears after "--", as argv items passed through
 * unchanged). Any error: a message on stderr and exit status 127, before exec.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "steps.h"

static const struct {
    const char *name;
    int resource;
} RESOURCES[] = {
    {"cpu", RLIMIT_CPU},         {"fsize", RLIMIT_FSIZE},   {"nofile", RLIMIT_NOFILE},
    {"stack", RLIMIT_STACK},     {"core", RLIMIT_CORE},     {"memlock", RLIMIT_MEMLOCK},
    {"nproc", RLIMIT_NPROC},     {"as", RLIMIT_AS},
};

/* With --status-fd: where the program's wait status goes, or our own failure
 * (LAUNCH_FAILED, which no wait status can be) if we fail before the program runs. */
static int status_out = -1;
#define LAUNCH_FAILED (-1)

/* With --cpu-fd: the box cgroup's CPU counter (see --status-fd at the top). */
static int cpu_in = -1;
#define CPU_UNKNOWN UINT64_MAX
#define PEAK_UNKNOWN UINT64_MAX

/* One record down the status pipe (at most 28 bytes: a pipe takes them whole). */
static void send_record(int fd, const void *record, size_t size) {
    ssize_t wrote;
    do
        wrote = write(fd, record, size);
    while (wrote < 0 && errno == EINTR);
}

static void report(int fd, int value) {
    send_record(fd, &value, sizeof value);
}

/* CPU time in ns: of the box's cgroup, or of our reaped children. */
static uint64_t cpu_used(void) {
    if (cpu_in < 0) {
        struct rusage usage;
        if (getrusage(RUSAGE_CHILDREN, &usage))
            return CPU_UNKNOWN;
        return ((uint64_t)usage.ru_utime.tv_sec + (uint64_t)usage.ru_stime.tv_sec) * 1000000000u +
               ((uint64_t)usage.ru_utime.tv_usec + (uint64_t)usage.ru_stime.tv_usec) * 1000u;
    }
    char text[64];
    ssize_t got = pread(cpu_in, text, sizeof text - 1, 0);
    if (got <= 0)
        return CPU_UNKNOWN;
    text[got] = '\0';
    const char *digits = text;
    uint64_t scale = 1; /* cpuacct.usage: "NS\n" */
    if (!strncmp(text, "usage_usec ", 11)) { /* cpu.stat: "usage_usec US\n..." first */
        digits = text + 11;
        scale = 1000;
    }
    char *end;
    errno = 0;
    unsigned long long value = strtoull(digits, &end, 10);
    if (errno || end == digits || *end != '\n' || value > CPU_UNKNOWN / scale - 1)
        return CPU_UNKNOWN;
    return value * scale;
}

static uint64_t now(void) {
    struct timespec time;
    clock_gettime(CLOCK_MONOTONIC, &time);
    return (uint64_t)time.tv_sec * 1000000000u + (uint64_t)time.tv_nsec;
}

/* Once the program has ended, as the pid namespace's init: kill what it left
 * running and reap it, before the CPU time is read. Without --cpu-fd that time
 * is RUSAGE_CHILDREN, which counts only reaped processes: an orphan still
 * running as the program exited would not count at all (a program could
 * spread its work over children, exit, and report almost no CPU time). With
 * it, nothing runs between our read and the box's end. (kill(-1) from a pid
 * namespace's init reaches every other process of the namespace; only as its
 * pid 1, which run() with --status-fd always is.) */
static void end_the_rest(void) {
    if (getpid() != 1)
        return;
    for (;;) {
        kill(-1, SIGKILL);
        if (wait(NULL) < 0 && errno == ECHILD)
            return;
    }
}

/* The largest resident set of our reaped children, in bytes (PEAK_UNKNOWN). */
static uint64_t peak_rss(void) {
    struct rusage usage;
    if (getrusage(RUSAGE_CHILDREN, &usage) || usage.ru_maxrss < 0)
        return PEAK_UNKNOWN;
    return (uint64_t)usage.ru_maxrss * 1024u;
}

/* The report's end record: the program's wait status, the CPU time, the time
 * of the program's end (what it left is ended after), the peak resident set. */
static void send_end(int fd, int status) {
    char record[sizeof status + 3 * sizeof(uint64_t)];
    uint64_t ended_at = now();
    end_the_rest();
    uint64_t values[3] = {cpu_used(), ended_at, peak_rss()};
    memcpy(record, &status, sizeof status);
    memcpy(record + sizeof status, values, sizeof values);
    send_record(fd, record, sizeof record);
}

static void die(const char *what, const char *detail) {
    fprintf(stderr, "stockade-launch: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    if (status_out >= 0)
        report(status_out, LAUNCH_FAILED);
    exit(127);
}

static unsigned long long number(const char *text, const char *option) {
    char *end;
    if (*text < '0' || *text > '9')
        die("not a number in", option);
    errno = 0;
    unsigned long long value = strtoull(text, &end, 10);
    if (errno || end == text || (*end && *end != ':'))
        die("not a number in", option);
    return value;
}

static void set_rlimit(const char *spec, const char *option) {
    const char *colon = strchr(spec, ':');
    if (!colon)
        die("expected NAME:SOFT:HARD in", option);
    size_t length = (size_t)(colon - spec);
    int resource = -1;
    for (size_t i = 0; i < sizeof RESOURCES / sizeof RESOURCES[0]; i++)
        if (strlen(RESOURCES[i].name) == length && !strncmp(RESOURCES[i].name, spec, length))
            resource = RESOURCES[i].resource;
    if (resource < 0)
        die("unknown resource in", option);
    const char *hard_text = strchr(colon + 1, ':');
    if (!hard_text)
        die("expected NAME:SOFT:HARD in", option);
    struct rlimit limit = {number(colon + 1, option), number(hard_text + 1, option)};
    if (strchr(hard_text + 1, ':') || limit.rlim_cur > limit.rlim_max)
        die("bad limits in", option);
    if (setrlimit(resource, &limit))
        die(option, strerror(errno));
}

static int one_stream; /* the run's "O": fd 2 becomes fd 1 just before the exec */

/* Exec the program; the status of exec's failure. */
static int exec_program(char **args) {
    if (one_stream && dup2(STDOUT_FILENO, STDERR_FILENO) < 0)
        return 127;
    execvp(args[0], args);
    int error = errno;
    fprintf(stderr, "stockade-launch: cannot run %s: %s\n", args[0], strerror(error));
    return error == ENOENT ? 127 : 126;
}

/* Run the program: in this process, or (status_fd >= 0) in a child whose wait
 * status goes to status_fd once it ends (see --status-fd at the top). */
static int run(char **args, int status_fd) {
    if (status_fd < 0)
        return exec_program(args);
    /* Before the fork: the child's exec makes it dumpable again, we stay not. */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0))
        die("prctl(PR_SET_DUMPABLE)", strerror(errno));
    uint64_t start[2] = {cpu_used(), now()}; /* the start record */
    pid_t child = fork();
    if (child < 0)
        die("fork", strerror(errno));
    if (child == 0) {
        close(status_fd);
        if (cpu_in >= 0)
            close(cpu_in);
        status_out = -1; /* from here on, failing is the program's (exec: 126 or 127) */
        _exit(exec_program(args));
    }
    /* Sent once the program is on its way: the write wakes the supervisor,
     * which needs it only later, and the program's start waited for that. */
    send_record(status_fd, start, sizeof start);
    /* The program's pipes end with the program (and what it started), not with us. */
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    for (int fd = 0; fd < 3; fd++)
        if (null >= 0 ? dup2(null, fd) < 0 : close(fd) < 0)
            _exit(127);
    for (;;) {
        int status;
        pid_t done = wait(&status);
        if (done == child) {
            send_end(status_fd, status);
            /* As pid 1, until the supervisor's SIGKILL (see --status-fd at the
             * top): no other signal reaches us. (A supervisor gone: bwrap dies
             * with it, and its PDEATHSIG kills us.) */
            while (getpid() == 1)
                pause();
            /* The same code bwrap would give. */
            _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
        }
        if (done < 0 && errno != EINTR)
            _exit(127); /* (ECHILD: cannot be, the child was ours) */
    }
}

#define MAX_MESSAGE (1 << 20)
#define MAX_ITEMS 65536

/* The warm-box mode: the run arrives on `fd` (see the top of this file). */
static int exec_from(int fd, int status_fd) {
    static char message[MAX_MESSAGE + 1];
    static char *args[MAX_ITEMS + 1], *env[MAX_ITEMS + 1];
    size_t length = 0;
    for (;;) {
        ssize_t got = read(fd, message + length, MAX_MESSAGE - length);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            die("reading the run", strerror(errno));
        if (got == 0)
            break;
        length += (size_t)got;
        if (length == MAX_MESSAGE)
            die("the run is too large", NULL);
    }
    close(fd);
    if (length && message[length - 1] != '\0')
        die("the run is not NUL-terminated", NULL);
    size_t nargs = 0, nenv = 0;
    const char *cwd = NULL;
    for (char *item = message; item < message + length; item += strlen(item) + 1) {
        char type = item[0], *value = item[0] ? item + 1 : item;
        if (type == 'A' && nargs < MAX_ITEMS)
            args[nargs++] = value;
        else if (type == 'E' && nenv < MAX_ITEMS && strchr(value, '='))
            env[nenv++] = value;
        else if (type == 'R' && !nargs)
            set_rlimit(value, item);
        else if (type == 'C' && !nargs)
            cwd = value;
        else if (type == 'O' && !nargs && !*value)
            one_stream = 1;
        else
            die("bad item in the run", item);
    }
    if (!nargs)
        die("no program in the run", NULL);
    args[nargs] = env[nenv] = NULL;
    if (cwd && chdir(cwd))
        die(cwd, strerror(errno));
    environ = env; /* execvp looks the program up in the run's own PATH */
    return run(args, status_fd);
}

/* A new network namespace with only its loopback, up; held until stdin ends. */
static int make_netns(void) {
    if (unshare(CLONE_NEWNET))
        die("unshare(CLONE_NEWNET)", strerror(errno));
    int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq request;
    memset(&request, 0, sizeof request);
    strcpy(request.ifr_name, "lo");
    if (sock < 0 || ioctl(sock, SIOCGIFFLAGS, &request))
        die("reading the loopback's flags", strerror(errno));
    request.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(sock, SIOCSIFFLAGS, &request))
        die("bringing the loopback up", strerror(errno));
    close(sock);
    if (write(1, "ready\n", 6) != 6)
        die("writing ready", strerror(errno));
    char buffer[64];
    while (read(0, buffer, sizeof buffer) > 0)
        ;
    return 0;
}

#define MAX_CGROUPS 16
#define MAX_FD 0x7fffffff /* (a supervisor with many boxes has descriptors past 1024) */

int main(int argc, char **argv) {
    long long uid = -1, gid = -1, exec_fd = -1, netns_fd = -1, status_fd = -1, cpu_fd = -1;
    const char *cgroups[MAX_CGROUPS];
    size_t ncgroups = 0;
    int i = 1;
    for (; i < argc && strcmp(argv[i], "--"); i++) {
        if (!strncmp(argv[i], "--uid=", 6))
            uid = (long long)number(argv[i] + 6, argv[i]);
        else if (!strncmp(argv[i], "--gid=", 6))
            gid = (long long)number(argv[i] + 6, argv[i]);
        else if (!strncmp(argv[i], "--rlimit=", 9))
            set_rlimit(argv[i] + 9, argv[i]);
        else if (!strncmp(argv[i], "--exec-fd=", 10))
            exec_fd = (long long)number(argv[i] + 10, argv[i]);
        else if (!strncmp(argv[i], "--status-fd=", 12)) {
            status_fd = (long long)number(argv[i] + 12, argv[i]);
            if (status_fd < 3 || status_fd > MAX_FD)
                die("--status-fd must be a descriptor above 2 of its own", NULL);
            status_out = (int)status_fd; /* first: a failure from here on is reported there */
        }
        else if (!strncmp(argv[i], "--cpu-fd=", 9))
            cpu_fd = (long long)number(argv[i] + 9, argv[i]);
        else if (!strncmp(argv[i], "--netns-fd=", 11))
            netns_fd = (long long)number(argv[i] + 11, argv[i]);
        else if (!strncmp(argv[i], "--cgroup-procs=", 15)) {
            if (ncgroups == MAX_CGROUPS)
                die("too many --cgroup-procs", NULL);
            cgroups[ncgroups++] = argv[i] + 15;
        }
        else if (!strcmp(argv[i], "--make-netns") && argc == 2)
            return make_netns();
        else
            die("unknown option", argv[i]);
    }
    if (status_fd >= 0) {
        if (uid >= 0 || netns_fd >= 0 || ncgroups)
            die("--status-fd is for inside the box: no --uid, no --netns-fd, no --cgroup-procs", NULL);
        if (status_fd == exec_fd)
            die("--status-fd must be a descriptor above 2 of its own", NULL);
    }
    if (cpu_fd >= 0) {
        if (status_fd < 0)
            die("--cpu-fd goes with --status-fd", NULL);
        if (cpu_fd < 3 || cpu_fd > MAX_FD || cpu_fd == status_fd || cpu_fd == exec_fd)
            die("--cpu-fd must be a descriptor above 2 of its own", NULL);
        cpu_in = (int)cpu_fd;
    }
    if (exec_fd >= 0) {
        if (uid >= 0 || netns_fd >= 0 || ncgroups || i < argc)
            die("--exec-fd takes the run from the fd: no --uid, no --netns-fd, no --cgroup-procs, no program", NULL);
        if (exec_fd < 3 || exec_fd > MAX_FD)
            die("--exec-fd must be a descriptor above 2", NULL);
        return exec_from((int)exec_fd, (int)status_fd);
    }
    if (i + 1 >= argc)
        die("usage: stockade-launch [--netns-fd=N] [--cgroup-procs=FILE]... [--uid=N --gid=N] "
            "[--rlimit=NAME:SOFT:HARD]... [--status-fd=N] -- PROGRAM [ARG]...", NULL);
    if ((uid < 0) != (gid < 0))
        die("--uid and --gid go together", NULL);
    if (netns_fd >= 0) {
        if (netns_fd < 3 || netns_fd > MAX_FD)
            die("--netns-fd must be a descriptor above 2", NULL);
        if (setns((int)netns_fd, CLONE_NEWNET))
            die("joining the slot's network namespace", strerror(errno));
        close((int)netns_fd);
    }
    /* Still as root: the cgroup files belong to root. */
    for (size_t n = 0; n < ncgroups; n++)
        if (join_cgroup(cgroups[n]))
            die(cgroups[n], strerror(errno));
    if (uid >= 0) {
        static const char *const failed[] = {
            [BECOME_REFUSED] = "refusing to run as uid or gid 0 (or out of range)",
            [BECOME_GROUPS] = "setgroups", [BECOME_GID] = "setresgid", [BECOME_UID] = "setresuid",
            [BECOME_CHECK] = "identity did not change for good",
        };
        enum become_step step = become(uid, gid);
        if (step != BECOME_OK)
            die(failed[step], step == BECOME_REFUSED || step == BECOME_CHECK ? NULL : strerror(errno));
    }
    return run(argv + i + 1, (int)status_fd);
}
