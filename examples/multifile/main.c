#include <stdio.h>
#include "greet.h"

int main(void) {
    char name[64];
    if (scanf("%63s", name) != 1) return 1;
    greet(name);
    return 0;
}
