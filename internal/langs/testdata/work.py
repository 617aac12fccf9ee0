# Test program of the runtime tools: "calls N" calls work() N times,
# "gc" runs gc.collect(). With PROFILE=1 a profile hook is set, which
# makes python 3.11 fire function__entry for every call.
import gc
import os
import sys


def work(i):
    return i + 1


if os.environ.get("PROFILE") == "1":
    sys.setprofile(lambda *a: None)
print("ready", flush=True)
for line in sys.stdin:
    f = line.split()
    if f[0] == "calls":
        for i in range(int(f[1])):
            work(i)
        print("called", f[1], flush=True)
    elif f[0] == "gc":
        gc.collect()
        print("gc done", flush=True)
    else:
        print("?", flush=True)
