# Starts threads until it cannot: the pids limit counts threads too.
# expect: status=ok
# limits: processes=32
# stdout-contains: LIMITED
import threading
import time

event = threading.Event()
count = 0
try:
    while count < 10000:
        threading.Thread(target=event.wait, daemon=True).start()
        count += 1
except RuntimeError as exc:
    print(f"LIMITED after {count} threads: {exc}")
if count >= 32:
    print(f"LEAK: started {count} threads, more than the 32 processes allowed")
event.set()
time.sleep(0.05)
