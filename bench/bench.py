#!/usr/bin/env python3
"""`make bench`: Tether's hot paths against the physical limit, on this machine, in one run.

Starts its own Redis (free port), the development upstream and a release build of Tether with
the Redis store and generated keys, seeds grants through the real authorization flow, then
drives load with `loadgen` (examples/loadgen.rs, a closed-loop HTTP/1.1 generator) and
measures, in the same run, the limits: `redis-benchmark -t get` at the same concurrency and
the HTTP floor (the load generator against /healthz). Prints a markdown table and writes it
to bench/RESULTS.md. Every process it starts is stopped when it ends, also on failure.

Only the standard library: http.client (kept-alive, as a browser) for the flows, subprocess for
the processes.
"""

import concurrent.futures
import datetime
import glob
import http.client
import http.cookiejar
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(ROOT, "target", "release")
DURATION = float(os.environ.get("BENCH_DURATION", "8"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
GRANTS = int(os.environ.get("BENCH_GRANTS", "1000"))
FLOW_THREADS = int(os.environ.get("BENCH_FLOW_THREADS", "8"))
REFRESH_CONCURRENCY = 32
COPIES = int(os.environ.get("BENCH_COPIES", "100000"))
SCALE = int(os.environ.get("BENCH_SCALE", "10000000"))
# The stored grants of the scale run belong to people with this many grants each (bench/sizing.py
# assumes the same).
GRANTS_PER_PERSON = 2
# Refresh storage: grants refreshed 1, 100 and REFRESH_ROUNDS times; and the soak test's size.
REFRESH_GRANTS = int(os.environ.get("BENCH_REFRESH_GRANTS", "50"))
REFRESH_ROUNDS = int(os.environ.get("BENCH_REFRESH_ROUNDS", "1000"))
SOAK_REFRESHES = int(os.environ.get("BENCH_SOAK_REFRESHES", "4000"))
RESOURCE_SECRET = "bench-resource-secret-0123456789"

children = []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(name, args, env=None, log=None):
    out = open(log, "wb") if log else subprocess.DEVNULL
    child = subprocess.Popen(args, cwd=ROOT, env={"PATH": os.environ["PATH"], **(env or {})},
                             stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    children.append((name, child))
    return child


def stop_all():
    for _, child in children:
        if child.poll() is None:
            child.terminate()
    for _, child in children:
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()


def wait_http(url, what):
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"bench: {what} did not start ({url})")


def rss_kib(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid, kernel_only=False):
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    if kernel_only:
        return int(fields[12]) / ticks  # stime
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


class Browser:
    """Cookies, no redirects followed, and one kept-alive connection per host, as a browser."""

    def __init__(self):
        self.jar = http.cookiejar.CookieJar()
        self.connections = {}

    def fetch(self, url, data=None, headers=None):
        request = urllib.request.Request(url, data=data, headers=headers or {})
        self.jar.add_cookie_header(request)
        parts = urllib.parse.urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        fields = dict(request.header_items())
        if data is not None:
            fields.setdefault("Content-Type", "application/x-www-form-urlencoded")
        for attempt in (1, 2):
            connection = self.connections.get(parts.netloc)
            if connection is None:
                connection = self.connections[parts.netloc] = http.client.HTTPConnection(parts.netloc, timeout=10)
            try:
                connection.request(request.get_method(), target, body=data, headers=fields)
                response = connection.getresponse()
                body = response.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # The server closed an idle kept-alive connection: once more on a new one.
                connection.close()
                del self.connections[parts.netloc]
                if attempt == 2:
                    raise
        self.jar.extract_cookies(response, request)
        return response.status, response.headers, body


def register(issuer):
    body = json.dumps({"client_name": "bench", "redirect_uris": ["http://127.0.0.1/cb"],
                       "grant_types": ["authorization_code", "refresh_token"],
                       "token_endpoint_auth_method": "none"}).encode()
    status, _, answer = Browser().fetch(f"{issuer}/register", body, {"content-type": "application/json"})
    assert status == 201, answer
    return json.loads(answer)["client_id"]


def flow(issuer, client_id, user):
    """One complete authorization: consent, upstream sign-in, callback, code exchange."""
    import base64
    import hashlib
    import secrets
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    query = urllib.parse.urlencode({"response_type": "code", "client_id": client_id, "redirect_uri": "http://127.0.0.1/cb",
                                    "state": "s", "code_challenge": challenge, "code_challenge_method": "S256",
                                    "resource": os.environ["BENCH_RESOURCE"], "scope": "files:read"})
    b = Browser()
    status, _, page = b.fetch(f"{issuer}/authorize?{query}")
    assert status == 200, page
    consent = re.search(rb'name="consent" value="([^"]+)"', page).group(1).decode()
    status, headers, _ = b.fetch(f"{issuer}/consent", urllib.parse.urlencode({"consent": consent, "decision": "approve"}).encode())
    assert status == 303
    upstream = urllib.parse.urlsplit(headers["Location"])
    fields = dict(urllib.parse.parse_qsl(upstream.query), username=user, decision="approve")
    status, headers, _ = b.fetch(f"{upstream.scheme}://{upstream.netloc}{upstream.path}", urllib.parse.urlencode(fields).encode())
    assert status == 302
    status, headers, _ = b.fetch(headers["Location"])
    assert status == 302
    code = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(headers["Location"]).query))["code"]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": "http://127.0.0.1/cb",
            "code_verifier": verifier, "client_id": client_id, "resource": os.environ["BENCH_RESOURCE"]}
    status, _, answer = b.fetch(f"{issuer}/token", urllib.parse.urlencode(form).encode())
    assert status == 200, answer
    return json.loads(answer)


def loadgen(url, concurrency, extra, duration=None):
    args = [os.path.join(RELEASE, "examples", "loadgen"), "--url", url, "--concurrency", str(concurrency),
            "--duration", str(duration or DURATION), "--warmup", "1", *extra]
    run = subprocess.run(args, capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"bench: loadgen failed: {run.stderr.strip()}")
    return json.loads(run.stdout)


def available_memory():
    """Bytes of memory available to new work now (/proc/meminfo)."""
    with open("/proc/meminfo") as f:
        return int(re.search(r"^MemAvailable:\s+(\d+) kB", f.read(), re.M).group(1)) * 1024


def machine_memory():
    """Bytes of memory this machine has (/proc/meminfo)."""
    with open("/proc/meminfo") as f:
        return int(re.search(r"^MemTotal:\s+(\d+) kB", f.read(), re.M).group(1)) * 1024


def wire(url, body, headers):
    """Bytes one call puts on the wire each way (request line, headers and body; status line,
    headers and body), as HTTP/1.1 without TLS. For a refresh, the answer's new refresh token
    comes back under `refresh_token` (the caller must use it next)."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.netloc, timeout=10)
    connection.request("POST", parts.path, body=body, headers=headers)
    response = connection.getresponse()
    answer = response.read()
    connection.close()
    sent = len(f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Length: {len(body)}\r\n") + \
        sum(len(k) + len(v) + 4 for k, v in headers.items()) + 2 + len(body)
    received = len(f"HTTP/1.1 {response.status} OK\r\n") + sum(len(k) + len(v) + 4 for k, v in response.getheaders()) + \
        2 + len(answer)
    assert response.status == 200, answer
    out = {"request": sent, "response": received}
    token = json.loads(answer).get("refresh_token")
    if token:
        out["refresh_token"] = token
    return out


def median_run(url, concurrency, extra, pid):
    runs = [loadgen(url, concurrency, extra) for _ in range(RUNS)]
    middle = sorted(runs, key=lambda r: r["rps"])[len(runs) // 2]
    middle["errors_total"] = sum(r["errors"] for r in runs)
    middle["first_error"] = next((r["first_error"] for r in runs if r["first_error"]), None)
    middle["peak_rss_kib"] = rss_kib(pid, "VmHWM")
    return middle


def redis_get(port, concurrency):
    out = subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-t", "get", "-c", str(concurrency),
                          "-n", "400000", "-q"], check=True, capture_output=True, text=True).stdout
    rates = [float(m) for m in re.findall(r"GET: ([0-9.]+) requests per second", out)]
    return rates[-1] if rates else 0.0


class Redis:
    """Just enough RESP for INFO, SCAN, DUMP and EVAL (binary-safe arguments)."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.file = self.sock.makefile("rb")

    def __call__(self, *args):
        parts = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(parts))
        return self.reply()

    def reply(self):
        line = self.file.readline()
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.file.read(n + 2)[:-2]
            return data
        if kind == b"*":
            return [self.reply() for _ in range(int(rest))]
        raise RuntimeError(f"unexpected reply {line!r}")

    def used_memory(self):
        info = self("INFO", "memory").decode()
        return int(re.search(r"^used_memory:(\d+)", info, re.M).group(1))

    def settled_memory(self):
        """`used_memory` once Redis has finished growing its key tables (it rehashes them
        incrementally, holding the old and the new table meanwhile): steady for a second."""
        last, deadline = self.used_memory(), time.time() + 15
        while time.time() < deadline:
            time.sleep(1)
            now = self.used_memory()
            if abs(now - last) < 64 * 1024:
                return now
            last = now
        return last

    def rehashed(self, key, limit=900):
        """Seconds until database 0's key and expiry tables are no longer rehashing (`None`: still
        rehashing after LIMIT seconds). Redis moves a bucket of each table per command that looks a
        key up (and a millisecond's worth every 100 ms): cheap lookups of KEY, 10,000 at a time,
        do under load what the bench's own traffic would do during the measurement."""
        started, batch = time.time(), b"*2\r\n$6\r\nEXISTS\r\n$%d\r\n%s\r\n" % (len(key), key)
        while time.time() - started < limit:
            if "Hash table 1" not in self("DEBUG", "HTSTATS", 0).decode():
                return time.time() - started
            for _ in range(200):
                self.sock.sendall(batch * 10_000)
                for _ in range(10_000):
                    self.reply()
        return None

    def commands(self):
        """Commands Redis has executed so far (every client)."""
        stats = self("INFO", "commandstats").decode()
        return sum(int(n) for n in re.findall(r"^cmdstat_[^:]+:calls=(\d+)", stats, re.M))

    def usage(self):
        """The sum of `MEMORY USAGE` over every key, and the number of keys: what the keys
        themselves take, without the allocator's and the connections' noise in `used_memory`."""
        total, count = self("EVAL", USAGE, 0)
        return int(total), int(count)

    def keys(self):
        cursor, found = "0", set()
        while True:
            cursor, batch = self("SCAN", cursor, "COUNT", 1000)
            found.update(batch)
            if cursor == b"0":
                return found


USAGE = """
local cursor, total, count = "0", 0, 0
repeat
  local page = redis.call("SCAN", cursor, "COUNT", 1000)
  cursor = page[1]
  for _, key in ipairs(page[2]) do
    total = total + (redis.call("MEMORY", "USAGE", key, "SAMPLES", "0") or 0)
    count = count + 1
  end
until cursor == "0"
return {total, count}
"""

# Copies one grant's keys (DUMP/RESTORE, same TTL, the hash tag suffixed with the copy's number):
# records the size of real ones for the memory and keyspace figures, without 1,000,000 logins.
COPY_GRANT = """
local first, last = tonumber(ARGV[1]), tonumber(ARGV[2])
for i = first, last do
  for k = 1, #KEYS do
    local copy = string.gsub(KEYS[k], "}", "-" .. i .. "}", 1)
    redis.call("RESTORE", copy, ARGV[1 + 2 * k], ARGV[2 + 2 * k], "REPLACE")
  end
end
return last - first + 1
"""


def copy_grant(redis, template, first, count, db=0, names=None):
    """COUNT copies of the TEMPLATE keys (database 0) into database DB, named after NAMES (default:
    the template's own names) with the copy's number in the hash tag."""
    names = names or template
    dumps = []
    for key in template:
        ttl = redis("PTTL", key)
        dumps += [max(ttl, 0), redis("DUMP", key)]
    redis("SELECT", db)
    batch = 5000
    for start in range(first, first + count, batch):
        last = min(start + batch, first + count) - 1
        redis("EVAL", COPY_GRANT, len(names), *names, start, last, *dumps)
    redis("SELECT", 0)


def bytes_per_copy(redis, template, count):
    """Redis memory per copy of TEMPLATE over COUNT copies in an empty database (1), emptied
    again afterwards. An empty database makes the figure repeatable: Redis doubles its key and
    expiry tables as they fill, so in a database already holding keys the same copies cost up
    to about 50 bytes a key more or less, depending on whether they cross a doubling."""
    before = redis.settled_memory()
    copy_grant(redis, template, 1, count, db=1)
    per_copy = (redis.settled_memory() - before) / count
    redis("SELECT", 1)
    redis("FLUSHDB")
    redis("SELECT", 0)
    return per_copy


def soak():
    """The soak test (tests/soak.rs: tether serve processes, a few grants refreshed SOAK_REFRESHES
    times in each of two phases, introspection and logins alongside) at bench size."""
    env = dict(os.environ, SOAK_REFRESHES=str(SOAK_REFRESHES))
    run = subprocess.run(["cargo", "test", "--locked", "--test", "soak", "--", "--nocapture"], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    summary = next((line for line in run.stderr.splitlines() if "refreshes x 2 phases" in line), "no summary printed")
    failure = next((line for line in run.stderr.splitlines() if "panicked" in line or line.startswith("error")), "")
    return run.returncode == 0, summary, failure


def main():
    work = tempfile.mkdtemp(prefix=f"tether-bench-{os.getpid()}-")
    redis_port, upstream_port, tether_port = free_port(), free_port(), free_port()
    issuer = f"http://127.0.0.1:{tether_port}"
    os.environ["BENCH_RESOURCE"] = "http://127.0.0.1:9000/mcp"
    start("redis", ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                    "--dir", work, "--enable-debug-command", "local"])
    start("dev_upstream", [os.path.join(RELEASE, "examples", "dev_upstream"), "--port", str(upstream_port),
                           "--redirect-uri", f"{issuer}/callback"])
    keys = subprocess.run([os.path.join(RELEASE, "tether"), "keys", "generate"], check=True, capture_output=True, text=True).stdout
    env = dict(line.split("=", 1) for line in keys.splitlines() if line.startswith("TETHER__"))
    env.update({
        "TETHER__ISSUER": issuer,
        "TETHER__SERVER__BIND": f"127.0.0.1:{tether_port}",
        "TETHER__STORE__KIND": "redis",
        "TETHER__STORE__URL": f"redis://127.0.0.1:{redis_port}",
        "TETHER__PROVIDERS__DEV__AUTHORIZE_URL": f"http://127.0.0.1:{upstream_port}/authorize",
        "TETHER__PROVIDERS__DEV__TOKEN_URL": f"http://127.0.0.1:{upstream_port}/token",
        "TETHER__PROVIDERS__DEV__USERINFO_URL": f"http://127.0.0.1:{upstream_port}/user",
        "TETHER__RESOURCES__DEMO__URI": os.environ["BENCH_RESOURCE"],
        "TETHER__RESOURCES__DEMO__SECRET": RESOURCE_SECRET,
        # All load comes from one address and one resource: the per-address and per-resource
        # limits would measure themselves (README "Security": size them for the busiest caller).
        "TETHER__LIMITS__REGISTER_PER_MINUTE": "0",
        "TETHER__LIMITS__AUTHORIZE_PER_MINUTE": "0",
        "TETHER__LIMITS__TOKEN_PER_MINUTE": "0",
        "TETHER__LIMITS__INTROSPECT_PER_SECOND": "0",
        # The compact record format; format 1 is measured against it below.
        "TETHER__STORE__WRITE_SCHEMA": "2",
        # The run outlasts the default 10 minutes: the first logins' access tokens must still be
        # valid when the last runs introspect them.
        "TETHER__TOKENS__ACCESS_TOKEN_TTL_SECS": "7200",
    })
    def start_tether(extra=None):
        child = start("tether", [os.path.join(RELEASE, "tether"), "--config", "config/demo.toml", "serve"],
                      {**env, **(extra or {})}, log=os.path.join(work, "tether.log"))
        wait_http(f"{issuer}/readyz", "Tether")
        return child

    tether = start_tether()
    wait_http(f"http://127.0.0.1:{upstream_port}/user", "the upstream stand-in")
    time.sleep(0.5)
    idle_rss = rss_kib(tether.pid)
    redis = Redis(redis_port)
    peaks = {}

    # Complete authorization flows (consent, upstream sign-in, callback, code exchange), FLOW_THREADS
    # browsers at a time.
    client_id = register(issuer)
    memory_before, cpu_before, started = redis.used_memory(), cpu_seconds(tether.pid), time.time()
    kernel_before, commands_before = cpu_seconds(tether.pid, kernel_only=True), redis.commands()
    with concurrent.futures.ThreadPoolExecutor(FLOW_THREADS) as pool:
        tokens = list(pool.map(lambda i: flow(issuer, client_id, f"user{i}"), range(GRANTS)))
    flow_seconds, flow_cpu = time.time() - started, cpu_seconds(tether.pid) - cpu_before
    flow_kernel = cpu_seconds(tether.pid, kernel_only=True) - kernel_before
    # Less the INFO that measured it.
    commands_per_flow = (redis.commands() - commands_before - 1) / GRANTS
    real_bytes_per_grant = (redis.used_memory() - memory_before) / GRANTS
    peaks["flows"] = rss_kib(tether.pid, "VmHWM")

    # One more flow, alone, names the keys one grant keeps.
    before = redis.keys()
    tokens.append(flow(issuer, client_id, "template"))
    new_keys = sorted(k for k in redis.keys() - before if b"{" in k)
    for key in new_keys:
        kind = redis("TYPE", key)
        if kind == "hash":
            raw = redis("HGETALL", key)
            layout = ", ".join(f"{raw[i].decode()} {len(raw[i + 1])}" for i in range(0, len(raw), 2))
        elif kind == "zset":
            layout = f"{redis('ZCARD', key)} entries"
        elif kind == "set":
            layout = f"{redis('SCARD', key)} members"
        elif kind == "list":
            layout = f"{redis('LLEN', key)} entries"
        elif kind == "stream":
            layout = f"{redis('XLEN', key)} entries"
        else:
            layout = f"{len(redis('GET', key))} bytes of value"
        print(f"grant key {key.decode().split('{')[0]}{{id}}: {redis('MEMORY', 'USAGE', key, 'SAMPLES', '0')} bytes "
              f"({kind}: {layout}; {redis('OBJECT', 'ENCODING', key)}, expires in {redis('TTL', key)} s)", file=sys.stderr)
    # Entries in the listings every grant shares (all, client, resource, provider), per grant.
    shared = [k for k in redis.keys() if re.search(rb":idx:(\{all\}|client:|resource:|provider:)", k)]
    shared_entries = max(redis("ZCARD", next((k for k in shared if b"{all}" in k), shared[0])), 1) if shared else 1
    listing_bytes_per_grant = sum(redis("MEMORY", "USAGE", k, "SAMPLES", "0") for k in shared) / shared_entries
    # What a stored grant keeps for its life; keys that expire within the hour (the used code's
    # replay marker) are left out of the per-grant figure and named in its note.
    template = [k for k in new_keys if not 0 <= redis("PTTL", k) < 3_600_000]
    transient = [k for k in new_keys if k not in template]
    transient_bytes = sum(redis("MEMORY", "USAGE", k, "SAMPLES", "0") for k in transient)
    transient_names = ", ".join(k.decode().split("{")[0].split(":")[-2] for k in transient)

    import base64
    basic = base64.b64encode(f"demo:{RESOURCE_SECRET}".encode()).decode()
    bodies = os.path.join(work, "introspect.txt")
    with open(bodies, "w") as f:
        f.writelines(f"token={t['access_token']}\n" for t in tokens)
    introspect = ["--method", "POST", "--header", f"authorization: Basic {basic}",
                  "--header", "content-type: application/x-www-form-urlencoded", "--bodies", bodies,
                  "--expect", '"active":true']
    results = {}
    for c in (32, 256):
        results[("introspect", c)] = median_run(f"{issuer}/introspect", c, introspect, tether.pid)
        peaks[f"introspection, {c} connections"] = results[("introspect", c)]["peak_rss_kib"]
        results[("healthz", c)] = median_run(f"{issuer}/healthz", c, [], tether.pid)
        results[("redis", c)] = statistics.median(redis_get(redis_port, c) for _ in range(RUNS))

    # Per introspection, for the sizing guide: Redis commands (a fixed number of requests at 32
    # connections, less the INFO calls that count them) and bytes on the wire (one call).
    before = redis.commands()
    counted = loadgen(f"{issuer}/introspect", 32, introspect + ["--requests", "500"], duration=300)
    commands_per_introspection = (redis.commands() - before - 1) / max(counted["requests"], 1)
    introspect_wire = wire(f"{issuer}/introspect", f"token={tokens[0]['access_token']}".encode(),
                           {"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"})

    # Record format 1 against 2, same grants, same run: every record rewritten into format 1 by
    # `tether store migrate` (timed) and back (timed), the memory per grant of each, then
    # introspection of each.
    def migrate(schema):
        started = time.time()
        run = subprocess.run([os.path.join(RELEASE, "tether"), "--config", "config/demo.toml", "store", "migrate"],
                             env={**os.environ, **env, "TETHER__STORE__WRITE_SCHEMA": schema}, capture_output=True,
                             text=True, cwd=ROOT)
        if run.returncode != 0:
            sys.exit(f"bench: tether store migrate failed: {run.stdout}{run.stderr}")
        numbers = [int(n) for n in re.findall(r"(\d+) (?:grants|connections)", run.stdout)[:2]]
        return sum(numbers), time.time() - started
    grant_key = next(k for k in template if b":grant:" in k)
    formats = {"2": {"bytes": bytes_per_copy(redis, template, COPIES), "grant_key": bytes_per_copy(redis, [grant_key], COPIES)}}
    rewritten, seconds = migrate("1")
    # Format 1 lists a connection's grants in a set of its own.
    sets = [k.replace(b":link:", b":link-grants:") for k in template if b":link:" in k]
    template_v1 = template + [k for k in sets if redis("EXISTS", k)]
    formats["1"] = {"bytes": bytes_per_copy(redis, template_v1, COPIES), "grant_key": bytes_per_copy(redis, [grant_key], COPIES),
                    "migrated": rewritten, "migrate_seconds": seconds}
    formats["2"]["migrated"], formats["2"]["migrate_seconds"] = migrate("2")
    # Introspection reads either format whatever Tether writes: the same Tether, the records
    # migrated between runs, the two formats' runs alternating so that drift in the shared
    # machine's speed falls on both.
    rates = {"1": [], "2": []}
    for _ in range(RUNS):
        for schema in ("1", "2"):
            migrate(schema)
            rates[schema].append(loadgen(f"{issuer}/introspect", 32, introspect)["rps"])
    for schema, runs in rates.items():
        formats[schema]["rps"] = statistics.median(runs)

    # What the audit trail costs introspection: the same load with auditing off, then on again,
    # back to back (Tether restarted each time; the grants stay in Redis).
    audit_rps = {}
    for label, enabled in (("off", "false"), ("on", "true")):
        tether.terminate()
        tether.wait(timeout=20)
        tether = start_tether({"TETHER__AUDIT__ENABLED": enabled})
        audit_rps[label] = median_run(f"{issuer}/introspect", 32, introspect, tether.pid)["rps"]
    # What background refresh costs introspection: on, its uses recorded at most once per grant
    # per interval (against the run just before, the default configuration). Then back to the default.
    tether.terminate()
    tether.wait(timeout=20)
    tether = start_tether({"TETHER__UPSTREAM__BACKGROUND_REFRESH": "true"})
    recent_before = redis.commands()
    background_rps = median_run(f"{issuer}/introspect", 32, introspect, tether.pid)["rps"]
    recent_keys = [k for k in redis.keys() if b":recent:" in k]
    recent_members = sum(redis("ZCARD", k) for k in recent_keys)
    background_commands = redis.commands() - recent_before
    tether.terminate()
    tether.wait(timeout=20)
    tether = start_tether()

    # Refresh-token grants: every connection rotates its own chains; the runs continue them.
    chains = os.path.join(work, "refresh.txt")
    with open(chains, "w") as f:
        f.writelines(f"grant_type=refresh_token&client_id={client_id}&refresh_token={t['refresh_token']}\n"
                     for t in tokens)
    refresh = ["--method", "POST", "--header", "content-type: application/x-www-form-urlencoded",
               "--bodies", chains, "--chain", "refresh_token", "--chain-out", chains, "--expect", '"access_token"']
    results["refresh"] = median_run(f"{issuer}/token", REFRESH_CONCURRENCY, refresh, tether.pid)
    peaks[f"refresh, {REFRESH_CONCURRENCY} connections"] = results["refresh"]["peak_rss_kib"]
    # Rotation held: every chain's last refresh token still works (once), and its predecessor
    # chain was not revoked as a replay.
    rotated, client = 0, Browser()
    with open(chains) as f:
        for body in f.read().split():
            status, _, answer = client.fetch(f"{issuer}/token", body.encode(),
                                             {"content-type": "application/x-www-form-urlencoded"})
            old = dict(urllib.parse.parse_qsl(body))["refresh_token"]
            rotated += status == 200 and json.loads(answer)["refresh_token"] != old
    chains_total = len(tokens)

    # Refresh storage: REFRESH_GRANTS new grants, each refreshed once, then 100 and REFRESH_ROUNDS
    # times in all (one connection per chain, nothing else running); what Redis holds per grant
    # at each point, measured against Redis before their logins.
    base_memory, (base_usage, base_keys) = redis.settled_memory(), redis.usage()
    with concurrent.futures.ThreadPoolExecutor(FLOW_THREADS) as pool:
        fresh = list(pool.map(lambda i: flow(issuer, client_id, f"rotating{i}"), range(REFRESH_GRANTS)))
    rounds = os.path.join(work, "rounds.txt")
    with open(rounds, "w") as f:
        f.writelines(f"grant_type=refresh_token&client_id={client_id}&refresh_token={t['refresh_token']}\n" for t in fresh)
    storage, done, refresh_commands, refreshes = [], 0, 0, 0
    refresh_wire = wire(f"{issuer}/token", open(rounds).readline().strip().encode(),
                        {"Content-Type": "application/x-www-form-urlencoded"})
    # (That call rotated one chain: its next token is the one the rounds must use.)
    with open(rounds) as f:
        lines = f.read().splitlines()
    lines[0] = re.sub(r"refresh_token=[^&]+", "refresh_token=" + refresh_wire.pop("refresh_token"), lines[0])
    with open(rounds, "w") as f:
        f.write("\n".join(lines) + "\n")
    for total in sorted({1, 100, REFRESH_ROUNDS}):
        chain = ["--method", "POST", "--header", "content-type: application/x-www-form-urlencoded", "--bodies", rounds,
                 "--chain", "refresh_token", "--chain-out", rounds, "--expect", '"access_token"',
                 "--requests", str(total - done)]
        before = redis.commands()
        run = loadgen(f"{issuer}/token", REFRESH_GRANTS, chain, duration=900)
        refresh_commands, refreshes = refresh_commands + redis.commands() - before - 1, refreshes + run["requests"]
        if run["errors"] or run["requests"] != REFRESH_GRANTS * (total - done):
            sys.exit(f"bench: refresh rounds failed: {run['requests']} answers, {run['errors']} errors: {run['first_error']}")
        done = total
        used, (usage, keys) = redis.settled_memory(), redis.usage()
        storage.append((total, (usage - base_usage) / REFRESH_GRANTS, (keys - base_keys) / REFRESH_GRANTS,
                        rss_kib(tether.pid), (used - base_memory) / REFRESH_GRANTS))

    # Redis memory per grant over COPIES copies of a real grant's keys, then the keyspace at
    # SCALE grants against the GRANTS real ones.
    copied_bytes_per_grant = bytes_per_copy(redis, template, COPIES)
    # The same with Redis keeping hashes whose values reach 512 bytes compact (listpack): an
    # operator's choice in redis.conf (default 64), shown for comparison only.
    redis("CONFIG", "SET", "hash-max-listpack-value", "512")
    listpack_bytes_per_grant = bytes_per_copy(redis, template, COPIES)
    redis("CONFIG", "SET", "hash-max-listpack-value", "64")
    # SCALE stored grants: people with GRANTS_PER_PERSON grants each, copies of a real login's keys
    # and of its grant's key under a further id on the same connection; as many as 70% of the
    # memory available now holds, if that is fewer.
    per_person = copied_bytes_per_grant + (GRANTS_PER_PERSON - 1) * formats["2"]["grant_key"]
    wanted = (SCALE - len(tokens)) // GRANTS_PER_PERSON
    fits = int(available_memory() * 0.7 / per_person)
    people = min(wanted, fits) // 1000 * 1000
    copy_grant(redis, template, 1, people)
    for n in range(2, GRANTS_PER_PERSON + 1):
        copy_grant(redis, [grant_key], 1, people, names=[grant_key + f"-{n}".encode()])
    grants_stored = len(tokens) + people * GRANTS_PER_PERSON
    # Measured once Redis has finished growing its key and expiry tables: it rehashes them a
    # step per command and a millisecond every 100 ms, holding both tables meanwhile, which a
    # store at a steady size does not.
    rehash_seconds = redis.rehashed(grant_key)
    results["scale"] = median_run(f"{issuer}/introspect", 32, introspect, tether.pid)
    redis_total = redis.used_memory()

    soaked, soak_summary, soak_failure = soak()

    rows = []
    def row(what, value, target="", note=""):
        rows.append(f"| {what} | {value} | {target} | {note} |")
    def verdict(ok):
        return "met" if ok else "**missed**"
    for c in (32, 256):
        r, h, g = results[("introspect", c)], results[("healthz", c)], results[("redis", c)]
        if c == 32:
            target, ok = "≥ 30,000 req/s, p99 < 5 ms, 0 errors", r["rps"] >= 30000 and r["p99_ms"] < 5 and not r["errors_total"]
        else:
            target, ok = "0 errors", not r["errors_total"]
        row(f"introspection, {c} connections", f"{r['rps']:,.0f} req/s, p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, "
            f"{r['errors_total']} errors", target,
            f"{verdict(ok)}; {r['rps'] / g:.0%} of Redis GET (stretch 40%), {r['rps'] / h['rps']:.0%} of /healthz")
        row(f"/healthz floor, {c} connections", f"{h['rps']:,.0f} req/s, p99 {h['p99_ms']:.2f} ms", "", "same load generator")
        row(f"redis-benchmark GET, {c} connections", f"{g:,.0f} req/s", "", "same machine, same run")
    r32, r256 = results[("introspect", 32)], results[("introspect", 256)]
    row("introspection, 256 vs 32 connections", f"{r256['rps'] / r32['rps']:.0%}", "≥ 80%", verdict(r256["rps"] >= 0.8 * r32["rps"]))
    rf = results["refresh"]
    row("introspection with the audit trail on vs off, 32 connections",
        f"{audit_rps['on']:,.0f} vs {audit_rps['off']:,.0f} req/s ({audit_rps['on'] / audit_rps['off']:.0%})", "≥ 90%",
        verdict(audit_rps["on"] >= 0.9 * audit_rps["off"]) + "; credential releases recorded once per grant and MCP "
        "server per `audit.release_interval_secs` (3600) with a count, so a hot grant costs two events an hour")
    row("introspection with background refresh on vs off, 32 connections",
        f"{background_rps:,.0f} vs {audit_rps['on']:,.0f} req/s ({background_rps / audit_rps['on']:.0%})", "≥ 90%",
        verdict(background_rps >= 0.9 * audit_rps["on"]) + f"; {recent_members:,} grants in the activity record over "
        f"{len(recent_keys)} keys (hash slots), {background_commands:,} Redis commands in all during that run: a grant's use "
        "is written once per replica per eighth of `background_window_secs`, not per call")
    row(f"refresh-token grants, {REFRESH_CONCURRENCY} connections",
        f"{rf['rps']:,.0f} grants/s, p50 {rf['p50_ms']:.2f} ms, p99 {rf['p99_ms']:.2f} ms, {rf['errors_total']} errors",
        "≥ 5,000/s (stretch 10,000/s), 0 errors", verdict(rf["rps"] >= 5000 and not rf["errors_total"]))
    row("rotation under that load", f"{rotated} of {chains_total} chains' last refresh token rotated once more",
        "all", verdict(rotated == chains_total) + "; every answer carried a new refresh token (loadgen checks)")
    flat = max(s[1] for s in storage) / min(s[1] for s in storage)
    row(f"Redis memory per grant after {' / '.join(f'{s[0]:,}' for s in storage)} refreshes of each "
        f"({REFRESH_GRANTS} grants, {REFRESH_GRANTS * REFRESH_ROUNDS:,} refreshes)",
        " / ".join(f"{s[1]:,.0f}" for s in storage) + " bytes", "flat within a few percent",
        verdict(flat <= 1.05 and len({s[2] for s in storage}) == 1) + f" (largest / smallest {flat:.3f}); keys per "
        "grant " + " / ".join(f"{s[2]:.2f}" for s in storage) + "; Redis `used_memory` per grant "
        + " / ".join(f"{s[4]:,.0f}" for s in storage) + "; Tether RSS " + " / ".join(f"{s[3] / 1024:.1f}" for s in storage)
        + " MB. `MEMORY USAGE` of the keys these grants' logins and refreshes added (grant, browser binding, code "
        "replay marker for 10 min, last successor for 30 s), per grant")
    row(f"soak test (tests/soak.rs), {SOAK_REFRESHES:,} refreshes of each grant per phase", "passed" if soaked else
        "**failed**", "keys and memory flat, nothing left past its lifetime", verdict(soaked) + f"; {soak_summary}"
        + (f"; {soak_failure}" if soak_failure else ""))
    row(f"authorization flows ({FLOW_THREADS} Python browsers)", f"{GRANTS / flow_seconds:,.0f} flows/s", "",
        "bounded by the Python client here, not by Tether")
    row("Tether CPU per complete flow", f"{flow_cpu / GRANTS * 1000:.2f} ms", "< 1 ms", verdict(flow_cpu / GRANTS < 0.001) +
        f"; {flow_kernel / flow_cpu:.0%} of it in the kernel; {commands_per_flow:.1f} Redis commands per flow; "
        "4 browser requests to Tether per flow over one kept-alive connection, as a browser does, and 2 calls to the upstream")
    row("idle RSS", f"{idle_rss / 1024:.1f} MB", "< 30 MB", verdict(idle_rss < 30 * 1024))
    for what, kib in peaks.items():
        row(f"peak RSS after {what}", f"{kib / 1024:.1f} MB", "< 150 MB", verdict(kib < 150 * 1024))
    kept = ", ".join(k.decode().split("{")[0].split(":")[-2] for k in template)
    f1, f2 = formats["1"], formats["2"]
    row(f"Redis memory per grant: its own key ({COPIES:,} copies of a real grant's key in an empty database)",
        f"{f2['grant_key']:,.0f} bytes", "< 1 KB (stretch 700 bytes)",
        verdict(f2["grant_key"] < 1000) + f"{'' if f2['grant_key'] < 700 else ' (stretch missed)'}; record format 2 "
        f"(format 1: {f1['grant_key']:,.0f}); what a person's further grant adds besides: its entries in the listings "
        f"all grants share ({listing_bytes_per_grant:,.0f} bytes) and in the person's own two (compact, a few dozen bytes), "
        "and one field of its connection")
    row(f"Redis memory per person's first grant ({COPIES:,} copies of everything a new person's login keeps: {kept})",
        f"{copied_bytes_per_grant:,.0f} bytes", "(sizing; no target)",
        f"{len(template)} keys, each about 160 bytes of keyspace and expiry entries besides its value; "
        f"{listpack_bytes_per_grant:,.0f} bytes with `hash-max-listpack-value 512` in Redis (default 64); "
        f"left out: {transient_names or 'nothing'} ({transient_bytes} bytes, gone within the hour) and the grant's "
        f"entries in the listings all grants share ({listing_bytes_per_grant:,.0f} bytes); "
        f"{real_bytes_per_grant:,.0f} bytes per login over the {GRANTS} real logins, their pending and code keys "
        "still held")
    row("record format 2 vs 1 (`store.write_schema`), same grants",
        f"{f2['bytes']:,.0f} vs {f1['bytes']:,.0f} bytes per stored grant with everything its login keeps; the grant's "
        f"own key {f2['grant_key']:,.0f} vs {f1['grant_key']:,.0f} bytes; introspection at 32 connections "
        f"{f2['rps']:,.0f} vs {f1['rps']:,.0f} req/s ({f2['rps'] / f1['rps']:.0%}; medians of {RUNS} alternating runs, "
        "the records migrated between them)",
        "introspection ≥ 95% of format 1", verdict(f2["rps"] >= 0.95 * f1["rps"]) +
        f"; `tether store migrate` rewrote {f1['migrated']:,} records into format 1 in {f1['migrate_seconds']:.1f} s and "
        f"{f2['migrated']:,} back into format 2 in {f2['migrate_seconds']:.1f} s (one process, while Tether served)")
    rs = results["scale"]
    short = "" if people == wanted // 1000 * 1000 else (
        f"; {SCALE:,} (BENCH_SCALE) would take about {redis_total / grants_stored * SCALE / 2**30:,.0f} GB at this "
        f"density, more than 70% of the memory this machine had available, so {grants_stored:,} is the size run")
    row(f"introspection with {grants_stored:,} stored grants vs {len(tokens):,}, 32 connections",
        f"{rs['rps']:,.0f} req/s ({rs['rps'] / r32['rps']:.0%}), p99 {rs['p99_ms']:.2f} ms, {rs['errors_total']} errors",
        "≥ 90%, 0 errors", verdict(rs["rps"] >= 0.9 * r32["rps"] and not rs["errors_total"])
        + (f" (first error: {rs['first_error']})" if rs["errors_total"] else "") + f"; Redis used {redis_total / 2**30:,.1f} GB "
        f"({redis_total / grants_stored:,.0f} bytes per grant): {people:,} people with {GRANTS_PER_PERSON} grants each "
        f"(copies of a real login's keys and of its grant's key under a further id), record format 2; the grants' "
        f"entries in the shared listings are not copied; measured "
        + (f"once Redis had finished growing its key tables ({rehash_seconds:.0f} s after the copies)" if rehash_seconds
           is not None else "while Redis was still growing its key tables 15 min after the copies") + short)

    cores = os.cpu_count()
    header = (f"# Benchmark results\n\n`make bench` on {datetime.date.today()}, {cores} cores; the load generator "
              f"(examples/loadgen.rs), Redis {redis('INFO', 'server').decode().split('redis_version:')[1].split()[0]} and "
              f"Tether (release build, Redis store, info logging to a file) share the machine. Median of {RUNS} runs of "
              f"{DURATION:.0f} s; {len(tokens):,} grants from real logins introspected round-robin. Per-address and "
              "per-resource rate limits are off (one load generator is every caller) and access tokens live 2 hours "
              "(the run outlasts the default 10 minutes); every other setting is the default.\n\n| measure | result | target | verdict and note |\n|---|---|---|---|\n")
    notes = ["\n## Reading the figures\n",
             "- Rate limits: with the defaults one MCP server is held to 10,000 introspections/s "
             "(`limits.introspect_per_second`) and one address to 600 token requests a minute "
             "(`limits.token_per_minute`); the figures above are what Tether does once those are sized for the "
             "caller (README \"Security\"). Nothing else is changed: the signature, audience, grant status and "
             "expiry checks all run; a token's verified signature is remembered (`tokens.verified_cache_entries`, "
             "on by default) but its grant is read from Redis on every call, so a revocation takes effect at once.",
             "- Introspection is one Redis round trip (HGETALL of the grant) plus HTTP; each HTTP worker talks to "
             "Redis over its own connection. Load generator, Redis and Tether share the 2 cores, so every figure "
             "is also bounded by the others' CPU."]
    if flow_cpu / GRANTS >= 0.001:
        notes += ["\n## What bounds the missed targets\n",
                  f"- CPU per flow ({flow_cpu / GRANTS * 1000:.2f} ms): a flow is 4 browser requests to Tether (over one "
                  f"kept-alive connection per browser), the upstream code exchange and user lookup (2 outgoing HTTP calls), "
                  f"{commands_per_flow:.0f} Redis commands (a MULTI/EXEC block counts each of its commands), one ES256 signature and one AES-GCM seal. "
                  f"{flow_kernel / flow_cpu:.0%} of Tether's CPU during the flows is kernel time (socket reads "
                  "and writes on the browser, upstream and Redis connections, epoll, waking the workers). Already "
                  "done: writes that do not depend on each other go out together (the callback's grant, code and "
                  "browser records; the exchange's refresh token and grant lifetime), a new browser skips the "
                  "earlier-grant lookup, a client's lifetime is renewed at most once per hundredth of it, and each "
                  "HTTP worker has its own Redis connection and upstream pool (no hand-off to another thread): 10 "
                  "Redis round trips per login instead of 16, 1.25 ms before. A `perf record` profile of 3,000 "
                  "flows shows no user-space function above 3.5% (memmove; malloc and free about 6%, ES256 about "
                  "2%); mimalloc in place of glibc's allocator made no measurable difference. What is left is "
                  "the per-event cost at this load: the 8 Python browsers leave Tether's workers idle between "
                  "requests, so each of the about 50 system calls per login (`strace -c`) comes with a wake-up. "
                  "The remaining round trips each wait on the one before (the client before the code, the code "
                  "before its grant, the consent before the pending request); fewer would take records that "
                  "share a key across steps, a protocol-layout change."]
    if f2["grant_key"] >= 1000:
        if flow_cpu / GRANTS < 0.001:
            notes.append("\n## What bounds the missed targets\n")
        notes += [f"- Redis memory per grant ({f2['grant_key']:,.0f} bytes): see the layout of the grant key above "
                  "(`make bench` prints it to stderr); a value over `hash-max-listpack-value` turns the hash into a "
                  "hash table."]
    notes += ["\n## Record formats\n",
              "- Format 2 (`store.write_schema = 2`, measured above unless a row says otherwise) keeps a grant's and a "
              "connection's hash compact (listpack) at Redis's defaults: the record as MessagePack and the sealed "
              "upstream tokens cut into pieces of at most 64 bytes, and a connection's grants as fields of its own "
              "hash rather than a set. Format 1 keeps JSON and the tokens in one field each, longer than 64 bytes, "
              "so Redis keeps those hashes as hash tables. What a new person's first login keeps beyond the grant "
              "(their connection, their user and account listings, the browser binding, their recent activity) is "
              "one key each; at about 160 bytes of keyspace per key besides the value, that is what keeps a first "
              "grant above 1 KB."]
    table = header + "\n".join(rows) + "\n" + "\n".join(notes) + "\n"
    print(table)
    with open(os.path.join(ROOT, "bench", "RESULTS.md"), "w") as f:
        f.write(table)
    # The figures bench/sizing.py turns into deploy/README.md's sizing guide.
    figures = {
        "date": str(datetime.date.today()), "cores": cores,
        "redis_bytes_per_grant": round(copied_bytes_per_grant),
        "redis_bytes_per_further_grant": round(f2["grant_key"]),
        "redis_bytes_per_grant_in_listings": round(listing_bytes_per_grant),
        "redis_bytes_per_login_transient": transient_bytes,
        "redis_commands_per_login": round(commands_per_flow, 1),
        "redis_commands_per_introspection": round(commands_per_introspection, 2),
        "redis_commands_per_refresh": round(refresh_commands / max(refreshes, 1), 2),
        "introspections_per_second_32": round(r32["rps"]), "introspection_p99_ms_32": r32["p99_ms"],
        "refreshes_per_second_32": round(rf["rps"]),
        "tether_cpu_ms_per_login": round(flow_cpu / GRANTS * 1000, 3),
        "redis_get_per_second_32": round(results[("redis", 32)]),
        "wire_bytes_introspection": introspect_wire, "wire_bytes_refresh": refresh_wire,
        "tether_rss_mb_peak": round(max(peaks.values()) / 1024, 1),
        "record_formats": {n: {"bytes_per_grant": round(f["bytes"]), "bytes_per_grant_key": round(f["grant_key"]),
                               "introspections_per_second_32": round(f["rps"]),
                               "records_migrated_per_second": round(f["migrated"] / max(f["migrate_seconds"], 1e-3))}
                           for n, f in formats.items()},
    }
    with open(os.path.join(ROOT, "bench", "results.json"), "w") as f:
        json.dump(figures, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    try:
        main()
    finally:
        stop_all()
        for work in glob.glob(os.path.join(tempfile.gettempdir(), f"tether-bench-{os.getpid()}-*")):
            shutil.rmtree(work, ignore_errors=True)
