# A CPU-bound Python program for profile's tests: about 70 % of its time
# in hot() and 30 % in warm(), both called from spin(), for as many seconds
# as its argument says (60 by default).
import sys
import time


def hot():
    s = 0
    for i in range(7000):
        s += i * i
    return s


def warm():
    s = 0
    for i in range(3000):
        s += i * i
    return s


def spin():
    hot()
    warm()


end = time.monotonic() + (float(sys.argv[1]) if len(sys.argv) > 1 else 60)
while time.monotonic() < end:
    spin()
