"""Benchmarks of the LoRITa engine; run each as ``python -m bench.NAME`` from the repo root.

OpenMP threads that wait by spinning (libgomp's default) turn every small op into a
wait for a descheduled thread when the CPU is shared with other processes: on a busy
2-core machine a training step of the FCN took 2.0 s instead of 0.05 s, and the SVD
of one 500x784 matrix 6-19 s instead of 0.7 s. Waiting passively costs little on an
idle machine, so the benchmarks ask for it (before torch is imported, which is when
libgomp reads it) unless the caller set a policy.
"""

from core.threads import prefer_passive_openmp_wait

prefer_passive_openmp_wait()
