#!/usr/bin/env python3
"""Hold N streamed chat completions open through the sidecar at once and report its RSS.

Used by `scripts/load.sh streams` (scripts/streams.sh): every connection POSTs a streamed
request whose prompt makes the scripted upstream tick slowly (`SLOW`), reads the response
head and the first chunk, and keeps reading; once all N are streaming, the sidecar's RSS is
read from /proc and compared with its RSS before. Loopback only; stdlib only.
Usage: hold_streams.py URL PID N
"""
import asyncio
import json
import sys
import urllib.parse


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SystemExit("no VmRSS")


async def one(url, started, body):
    u = urllib.parse.urlsplit(url)
    reader, writer = await asyncio.open_connection(u.hostname, u.port)
    head = (f"POST {u.path} HTTP/1.1\r\nHost: {u.netloc}\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer sk-bench\r\nContent-Length: {len(body)}\r\n\r\n")
    writer.write(head.encode() + body)
    await writer.drain()
    status = await reader.readline()
    if b" 200 " not in status:
        raise SystemExit(f"stream refused: {status!r} {await reader.read(500)!r}")
    got = b""
    while b"data:" not in got:  # headers, then the first event
        chunk = await reader.read(4096)
        if not chunk:
            raise SystemExit("stream ended early")
        got += chunk
    started.append(1)
    try:
        while await reader.read(4096):
            pass
    finally:
        writer.close()


async def main():
    url, pid, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    body = json.dumps({"model": "gpt-4o-mini", "stream": True,
                       "messages": [{"role": "user", "content": "SLOW hold this stream open"}]}).encode()
    before = rss_kib(pid)
    started = []
    tasks = [asyncio.create_task(one(url, started, body)) for _ in range(n)]
    for _ in range(600):
        if len(started) >= n:
            break
        done = [t for t in tasks if t.done() and t.exception()]
        if done:
            raise done[0].exception()
        await asyncio.sleep(0.1)
    if len(started) < n:
        raise SystemExit(f"only {len(started)} of {n} streams started within 60 s")
    await asyncio.sleep(3)  # every stream has ticked a few times
    during = rss_kib(pid)
    print(f"{n} open streams: sidecar RSS {before / 1024:.1f} MiB before, {during / 1024:.1f} MiB with "
          f"them open: {(during - before) / 1024:.1f} MiB for {n} streams "
          f"({(during - before) / n:.1f} KiB per stream)")
    for t in tasks:
        t.cancel()


asyncio.run(main())
