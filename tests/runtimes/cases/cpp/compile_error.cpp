int main() { std::vector<int> v; return missing(v); }
