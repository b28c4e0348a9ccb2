# Reads n on stdin and prints the n-th Fibonacci number (fib(0) = 0, fib(1) = 1).
n = int(input())
a, b = 0, 1
for _ in range(n):
    a, b = b, a + b
print(a)
