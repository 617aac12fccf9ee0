# Python workload of the soak: until stdin closes, every 10 ms 20 calls of
# work(); every 100 ms a collection and a thread started and joined.
import gc
import os
import select
import threading


def work(i):
    return i + 1


gc.disable()  # collections only when asked
print("ready", flush=True)
n = 0
while True:
    r, _, _ = select.select([0], [], [], 0.01)
    if r and not os.read(0, 100):
        break
    for i in range(20):
        work(i)
    n += 1
    if n % 10 == 0:
        gc.collect()
        t = threading.Thread(target=work, args=(n,))
        t.start()
        t.join()
