#include <cstdlib>
#include <iostream>
int main() { std::cerr << "failing on purpose" << std::endl; std::exit(3); }
