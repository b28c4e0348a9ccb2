/* expect: ok — the program is the cached product, mounted read-only at /box/build:
   it tries to change itself and its neighbours; it prints "CHANGED what" on success. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

static void check(const char *what, int rc) {
    if (rc >= 0) printf("CHANGED %s\n", what);
    else printf("refused %s errno=%d\n", what, errno);
}

int main(int argc, char **argv) {
    check("open self for writing", open("/box/build/main", O_WRONLY));
    check("truncate self", truncate("/box/build/main", 0));
    check("chmod self", chmod("/box/build/main", 06777));
    check("create a file", open("/box/build/planted", O_WRONLY | O_CREAT, 0644));
    check("symlink", symlink("/etc/shadow", "/box/build/link"));
    check("hard link", link("/box/build/main", "/box/hard"));
    check("rename self", rename("/box/build/main", "/box/build/moved"));
    check("unlink self", unlink("/box/build/main"));
    check("mkdir", mkdir("/box/build/d", 0755));
    check("remove the mount", rmdir("/box/build"));
    printf("done\n");
    return 0;
}
