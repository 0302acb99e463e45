"""How the engine's OpenMP threads wait.

libgomp's threads wait by spinning by default. On a CPU shared with other
processes (a worker beside the API, several workers on one box, a laptop) every
small op then waits for a descheduled thread: a training step of the MNIST FCN
was measured at 2 s instead of 0.05 s on a busy 2-core machine, and an SVD of a
500x784 matrix at 6-19 s instead of 0.7 s. Passive waiting costs little on an
idle machine. libgomp reads the variable once, when torch loads, so the entry
points call this before anything imports torch; a policy set by the user wins.
"""

import os


def prefer_passive_openmp_wait() -> None:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
