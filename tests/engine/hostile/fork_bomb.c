/* expect: time_limit | wall_time_limit — forks until the pids limit, then spins. */
#include <unistd.h>
int main(void) {
    for (;;) fork();
}
