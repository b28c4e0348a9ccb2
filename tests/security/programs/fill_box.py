# Fills the work directory with files under the size limit each: /box is memory of the box.
# expect: status=memory_limit
# limits: memory=64M file_size=8M
n = 0
while True:
    with open(f"/box/fill-{n}", "wb") as f:
        f.write(b"\1" * (4 << 20))
    n += 1
    if n > 1000:
        print(f"LEAK: {n * 4} MiB written to /box")
        break
