"""httpx vs aiohttp vs Tollway's own HTTP/1.1 client (``providers/h1.py``) as the upstream
client: client CPU per request against the bench mock.

    node ../shared/bench/mock_upstream.js &      # 127.0.0.1:18080
    .venv/bin/python bench/upstream_client_compare.py [requests] [concurrency]

Each client sends keep-alive POSTs of a small chat body; it prints CPU ms per request (this
process only) and wall requests/s, twice each, interleaved.
"""

import asyncio
import json
import sys
import time

import aiohttp
import httpx
import uvloop

from tollway.providers.h1 import Pool

BODY = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).encode()
URL = "http://127.0.0.1:18080/v1/chat/completions"
HEADERS = {"authorization": "Bearer x", "content-type": "application/json"}


async def run_httpx(n: int, c: int) -> None:
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    async with httpx.AsyncClient(limits=limits) as client:
        async def worker() -> None:
            for _ in range(n // c):
                r = await client.post(URL, content=BODY, headers=HEADERS)
                r.read()
        await asyncio.gather(*[worker() for _ in range(c)])


async def run_aiohttp(n: int, c: int) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as session:
        async def worker() -> None:
            for _ in range(n // c):
                async with session.post(URL, data=BODY, headers=HEADERS) as r:
                    await r.read()
        await asyncio.gather(*[worker() for _ in range(c)])


async def run_h1(n: int, c: int) -> None:
    pool = Pool(connect_timeout=10)

    async def worker() -> None:
        for _ in range(n // c):
            r = await pool.request("POST", URL, HEADERS, BODY)
            await r.read()
            r.release()
    await asyncio.gather(*[worker() for _ in range(c)])
    await pool.close()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 4000
    c = int(sys.argv[2]) if len(sys.argv) > 2 else 16
    for name, fn in [("httpx", run_httpx), ("aiohttp", run_aiohttp), ("h1", run_h1)] * 2:
        cpu, wall = time.process_time(), time.perf_counter()
        uvloop.run(fn(n, c))
        print(f"{name:8} cpu ms/req {(time.process_time() - cpu) / n * 1000:.3f}  "
              f"wall rps {n / (time.perf_counter() - wall):.0f}")


if __name__ == "__main__":
    main()
