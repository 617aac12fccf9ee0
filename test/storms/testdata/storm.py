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
import time


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
if kind in ("threads", "live"):
    # join returns when a thread's Python state is gone, before the
    # thread's exit in the kernel (uthreads' stop event): on a loaded
    # machine that can come after "done". A thread leaves /proc/self/task
    # after its exit was traced.
    deadline = time.monotonic() + 30
    while len(os.listdir("/proc/self/task")) > 1:
        if time.monotonic() > deadline:
            sys.exit("threads still alive: %s" % os.listdir("/proc/self/task"))
        time.sleep(0.001)
print("done", flush=True)
while os.read(0, 100):
    pass
