# A directory tree 5000 levels deep in /box: teardown must remove it whatever its depth
# (a recursive removal hits Python's recursion limit, leaves the box and poisons the slot).
# expect: status=ok
# stdout-contains: depth 5000
import os

os.chdir("/box")
for depth in range(1, 5001):
    os.mkdir("d")
    os.chdir("d")
print(f"depth {depth}")
