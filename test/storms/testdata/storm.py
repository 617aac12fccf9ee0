# Workload of the Python storms: "storm.py KIND N" says ready, waits for a
# line, makes N events of KIND (calls: N returns of work(); gc: N
# collections; threads: N threads started and joined one by one; live: N
# threads alive at once, then all ended and joined), says done and
# waits for EOF. It calls no other Python function meanwhile (uflow would
# see it).
import gc
import os
import sys
import threading


def work(i):
    return i + 1


kind, n = sys.argv[1], int(sys.argv[2])
gc.disable()  # collections only when asked
print("ready", flush=True)
os.read(0, 100)  # not sys.stdin: its decoder is Python code, whose return uflow would see
if kind == "calls":
    for i in range(n):
        work(i)
elif kind == "gc":
    for i in range(n):
        gc.collect()
elif kind == "threads":
    for i in range(n):
        t = threading.Thread(target=work, args=(i,))
        t.start()
        t.join()
elif kind == "live":
    end = threading.Event()
    threads = [threading.Thread(target=end.wait) for i in range(n)]
    for t in threads:
        t.start()
    end.set()
    for t in threads:
        t.join()
print("done", flush=True)
while os.read(0, 100):
    pass
