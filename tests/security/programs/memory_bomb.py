# Allocates and touches memory forever.
# expect: status=memory_limit oom_killed=true
# limits: memory=64M
chunks = []
while True:
    chunks.append(bytearray(8 << 20))  # zero-filled: every page touched
