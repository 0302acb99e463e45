"""The request path under concurrency: a real uvicorn server on the embedded SQLite
database answers 80 concurrent GET /jobs/{id} while 20 event streams are open.

The API used to lock up from 56 concurrent requests on (40 threads + 15 pooled
connections + 1): sync dependencies held a connection while the request waited for
a thread, until the pool's 30 s timeout turned them into 500s.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time

import httpx
import pytest

from bench.service_load import Server, seed, server_env

CLIENTS = 80
STREAMS = 20
# Far above what the answers take even on a loaded machine, below the 30 s pool
# timeout after which the old code gave up.
BOUND_S = 25


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("load")
    env = server_env(folder / "state")
    token, job_id = seed(env, jobs=3)
    server = Server(env, folder / "server.log").wait_ready()
    yield server, token, job_id
    server.stop()


async def burst(base: str, token: str, job_id: str) -> tuple[list[int], int, float]:
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=CLIENTS + STREAMS + 5)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
        opened = 0
        streams = []
        for _ in range(STREAMS):  # the job stays queued: the streams stay open
            request = client.build_request("GET", f"/api/v1/jobs/{job_id}/events", headers=headers)
            response = await client.send(request, stream=True)
            opened += response.status_code == 200
            streams.append(response)
        started = time.monotonic()
        answers = await asyncio.gather(
            *(client.get(f"/api/v1/jobs/{job_id}", headers=headers) for _ in range(CLIENTS))
        )
        elapsed = time.monotonic() - started
        for response in streams:
            await response.aclose()
    return [answer.status_code for answer in answers], opened, elapsed


def test_concurrent_requests_do_not_starve_the_pool(server):
    server_process, token, job_id = server
    # A thread of its own: another test's browser session may hold this thread's event loop.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        run = pool.submit(asyncio.run, burst(server_process.base, token, job_id))
        codes, opened, elapsed = run.result()
    assert opened == STREAMS
    assert codes == [200] * CLIENTS, {code: codes.count(code) for code in set(codes)}
    assert elapsed < BOUND_S, f"{CLIENTS} requests took {elapsed:.1f} s"
    # The trivial route still answers beside them.
    assert httpx.get(server_process.base + "/livez", timeout=10).status_code == 200
