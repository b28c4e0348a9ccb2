#include <vector>
int main() {
    std::vector<std::vector<char>> hoard;
    for (;;) hoard.emplace_back(1 << 20, 'x');
}
