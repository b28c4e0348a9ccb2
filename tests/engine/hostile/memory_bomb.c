/* expect: memory_limit — parent and forked children all touch memory. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int main(void) {
    for (int i = 0; i < 4; i++) if (fork() == 0) break;
    for (;;) {
        char *p = malloc(4 << 20);
        if (p) memset(p, 0x5a, 4 << 20);
    }
}
