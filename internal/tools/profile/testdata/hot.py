# CPU-bound, ~70 % in hot() and ~30 % in warm() under spin(), for argv[1] s
# (60 by default); SIGUSR1 prints "split HOT WARM": their CPU seconds.
# The tests assert line numbers: keep hot at 8, spin at 22, the loop at 28.
import signal, sys, time  # noqa: E401
spent, mark = [0.0, 0.0], [time.process_time()]
signal.signal(signal.SIGUSR1, lambda *_: print("split %.6f %.6f" % tuple(spent), flush=True))

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
    hot(); t = time.process_time(); spent[0] += t - mark[0]; mark[0] = t  # noqa: E702
    warm(); t = time.process_time(); spent[1] += t - mark[0]; mark[0] = t  # noqa: E702


end = time.monotonic() + (float(sys.argv[1]) if len(sys.argv) > 1 else 60)
while time.monotonic() < end:
    spin()
