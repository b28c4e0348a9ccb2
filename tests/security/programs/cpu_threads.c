// Four threads spinning at once: CPU of all threads counts, faster than wall time.
// expect: status=time_limit signal=9 max_wall=2.5
// limits: cpu_time=1 wall_time=3
// cflags: -pthread
#include <pthread.h>
#include <stdio.h>

static void *spin(void *arg) {
    volatile unsigned long n = 0;
    for (;;) n++;
    return arg;
}

int main(void) {
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, spin, NULL);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    puts("LEAK: the spinning threads ended");
    return 0;
}
