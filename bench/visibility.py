#!/usr/bin/env python3
"""Measures how long a created message takes to become readable by GET (and the counts to
settle): posts N messages (4 at a time), polls each until it reads back, prints p50/p99.
Usage: visibility.py BASE_URL TOKEN CHAT [N]"""
import concurrent.futures as cf
import http.client
import json
import sys
import time
import urllib.parse

base, token, chat = sys.argv[1], sys.argv[2], sys.argv[3]
n = int(sys.argv[4]) if len(sys.argv) > 4 else 200
u = urllib.parse.urlsplit(base)


def call(method, path, body=None):
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    c.request(method, path, body=json.dumps(body) if body else None,
              headers={"Content-Type": "application/json"} if body else {})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def one(i):
    status, data = call("POST", f"/applications/{token}/chats/{chat}/messages", {"body": f"visibility {i}"})
    assert status == 201, status
    acknowledged = time.monotonic()
    number = json.loads(data)["number"]
    while True:
        status, _ = call("GET", f"/applications/{token}/chats/{chat}/messages/{number}")
        if status == 200:
            return time.monotonic() - acknowledged
        time.sleep(0.002)


with cf.ThreadPoolExecutor(4) as ex:
    delays = sorted(ex.map(one, range(n)))
started = time.monotonic()
while True:
    status, data = call("GET", f"/applications/{token}/chats/{chat}")
    count = json.loads(data).get("messages_count") if status == 200 else None
    stored = 0
    status2, data2 = call("GET", f"/applications/{token}/chats/{chat}/messages?limit=1000")
    # the count must equal what is stored; the list reads the rows themselves
    if status2 == 200:
        stored = len(json.loads(data2))
    if count is not None and count == stored and stored >= n:
        break
    time.sleep(0.01)
settle = time.monotonic() - started
p = lambda q: delays[min(len(delays) - 1, int(len(delays) * q))] * 1000
print(f"201 -> readable by GET over {n} creates: p50 {p(0.5):.1f} ms, p99 {p(0.99):.1f} ms, max {delays[-1]*1000:.1f} ms; "
      f"messages_count equal to the rows {settle*1000:.0f} ms after the last read")
