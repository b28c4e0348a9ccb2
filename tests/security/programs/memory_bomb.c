// malloc and memset in a loop, in C: no interpreter between it and the kernel.
// expect: status=memory_limit oom_killed=true
// limits: memory=64M
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
    for (;;) {
        char *p = malloc(4 << 20);
        if (!p) { puts("malloc failed"); return 0; }
        memset(p, 1, 4 << 20);
    }
}
