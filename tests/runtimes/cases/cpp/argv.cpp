#include <iostream>
int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) std::cout << (i > 1 ? "|" : "") << argv[i];
    std::cout << '\n';
}
