#!/usr/bin/env python3
"""The sizing guide in deploy/README.md, computed from `make bench`'s figures (bench/results.json).

    python3 bench/sizing.py            prints the section
    python3 bench/sizing.py --write    replaces it in deploy/README.md (between the sizing markers)
    python3 bench/sizing.py --check    fails when deploy/README.md's section is not what it computes
                                       (make lint runs this: the guide is never edited by hand)

Every number in the section comes from results.json and the budgets below; edit those, not the
README. The traffic assumed per size is stated in the table, so an operator can redo the
arithmetic for their own.
"""

import json
import math
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results.json")
README = os.path.join(ROOT, "deploy", "README.md")
BEGIN, END = "<!-- sizing:begin (bench/sizing.py writes this) -->", "<!-- sizing:end -->"

# What one Redis primary is planned to carry: memory for data (a 32 GB node keeps headroom for
# fork-on-save, replication buffers and fragmentation) and commands a second (a single-threaded
# Redis does 100,000+ simple commands a second; half of it leaves room for bursts and resharding).
PRIMARY_MEMORY_GB = 20
PRIMARY_COMMANDS_PER_SECOND = 50_000
# What one Tether replica is planned to carry, as a share of what `make bench` measured on its
# machine (where the load generator and Redis took part of the same cores).
REPLICA_SHARE = 0.5
# Traffic per size: introspections a second per million stored grants (one MCP tool call per
# grant about every 8 minutes), refreshes per introspection, logins per introspection.
INTROSPECTIONS_PER_MILLION = 2_000
REFRESHES_PER_INTROSPECTION = 0.05
LOGINS_PER_INTROSPECTION = 0.002
SIZES = (1_000_000, 10_000_000, 100_000_000)
# Grants per person: each further grant of a person shares their connection, listings and browser
# binding (a person using two MCP clients, or one client with two MCP servers).
GRANTS_PER_PERSON = 2


def figures():
    try:
        with open(RESULTS) as f:
            return json.load(f)
    except FileNotFoundError:
        sys.exit(f"sizing: {RESULTS} is missing: run `make bench` first")


def section(b):
    # A grant: its own key and its listing entries; a person: what their first login keeps besides.
    per_grant = b["redis_bytes_per_further_grant"] + b["redis_bytes_per_grant_in_listings"]
    per_person = b["redis_bytes_per_grant"] - b["redis_bytes_per_further_grant"]
    formats = b.get("record_formats", {})
    per_replica = b["introspections_per_second_32"] * REPLICA_SHARE
    wire_in = b["wire_bytes_introspection"]
    lines = [
        BEGIN,
        "### Sizing, from measurements",
        "",
        f"From `make bench` on {b['date']} ({b['cores']} cores shared by the load generator, Redis and Tether; "
        "bench/RESULTS.md), regenerated with `python3 bench/sizing.py --write`:",
        "",
        "| per | Redis memory | Redis commands | network (request / response) |",
        "|---|---|---|---|",
        f"| stored grant | {b['redis_bytes_per_further_grant']:,} bytes (its key), plus "
        f"{b['redis_bytes_per_grant_in_listings']:,} in the listings every grant is in | | |",
        f"| person (their first grant's connection, listings, browser binding, recent activity) | {per_person:,} bytes "
        f"(a first grant with all of it: {b['redis_bytes_per_grant']:,}) | | |",
        f"| login (a whole authorization) | {b['redis_bytes_per_login_transient']:,} bytes more for under an hour "
        f"(code replay marker, sign-in) | {b['redis_commands_per_login']:g} | 4 browser requests, 2 calls upstream |",
        f"| introspection | none | {b['redis_commands_per_introspection']:g} | "
        f"{wire_in['request']:,} / {wire_in['response']:,} bytes |",
        f"| refresh | none (the family is rewritten in place) | {b['redis_commands_per_refresh']:g} | "
        f"{b['wire_bytes_refresh']['request']:,} / {b['wire_bytes_refresh']['response']:,} bytes |",
        "",
        f"A Tether replica is planned at {REPLICA_SHARE:.0%} of the measured {b['introspections_per_second_32']:,} "
        f"introspections/s (p99 {b['introspection_p99_ms_32']:.2f} ms): **{per_replica:,.0f} introspections/s per "
        f"replica of {b['cores']} cores ({1000 / per_replica:.2f} replicas per 1,000/s)**; peak RSS "
        f"{b['tether_rss_mb_peak']:g} MB. A "
        f"Redis primary is planned at {PRIMARY_MEMORY_GB} GB of data and {PRIMARY_COMMANDS_PER_SECOND:,} commands/s "
        f"(this machine's Redis did {b['redis_get_per_second_32']:,} GETs/s). Traffic assumed: "
        f"{INTROSPECTIONS_PER_MILLION:,} introspections/s per million grants, refreshes {REFRESHES_PER_INTROSPECTION:.0%} "
        f"and logins {LOGINS_PER_INTROSPECTION:.1%} of that; {GRANTS_PER_PERSON:g} grants per person (one connection "
        "each: a person using two MCP clients, or one client with two MCP servers). Record format 2 "
        "(`store.write_schema`)"
        + (f"; in format 1 a first grant with all it keeps takes {formats['1']['bytes_per_grant']:,} bytes and a grant's "
           f"key {formats['1']['bytes_per_grant_key']:,}" if "1" in formats else "") + ".",
        "",
        "| stored grants | Redis data | introspections/s | Redis commands/s | Cluster primaries (memory, commands) "
        "| Tether replicas | network in / out |",
        "|---|---|---|---|---|---|---|",
    ]
    for grants in SIZES:
        data_gb = (grants * per_grant + grants / GRANTS_PER_PERSON * per_person) / 1e9
        introspections = grants / 1e6 * INTROSPECTIONS_PER_MILLION
        refreshes, logins = introspections * REFRESHES_PER_INTROSPECTION, introspections * LOGINS_PER_INTROSPECTION
        commands = (introspections * b["redis_commands_per_introspection"] + refreshes * b["redis_commands_per_refresh"]
                    + logins * b["redis_commands_per_login"])
        by_memory, by_commands = math.ceil(data_gb / PRIMARY_MEMORY_GB), math.ceil(commands / PRIMARY_COMMANDS_PER_SECOND)
        primaries = max(3, by_memory, by_commands) if max(by_memory, by_commands) > 1 else 1
        replicas = max(2, math.ceil(introspections / per_replica))
        net_in = (introspections * wire_in["request"] + refreshes * b["wire_bytes_refresh"]["request"]) * 8 / 1e6
        net_out = (introspections * wire_in["response"] + refreshes * b["wire_bytes_refresh"]["response"]) * 8 / 1e6
        layout = "one primary and a replica" if primaries == 1 else f"{primaries} ({by_memory}, {by_commands})"
        lines.append(f"| {grants:,} | {data_gb:,.1f} GB | {introspections:,.0f} | {commands:,.0f} | {layout} | "
                     f"{replicas} | {net_in:,.0f} / {net_out:,.0f} Mbit/s |")
    lines += [
        "",
        "Give every primary a replica (failover) and size nodes for data plus headroom, not data alone. "
        "Memory grows with stored grants (a grant lives until its refresh token's lifetime ends); commands "
        "and replicas grow with traffic, so recompute with your own rates: the sums above are the per-call "
        "figures times the rates.",
        END,
    ]
    return "\n".join(lines) + "\n"


def main():
    text = section(figures())
    mode = (sys.argv[1:] or ["--print"])[0]
    if mode == "--print":
        print(text, end="")
        return
    with open(README) as f:
        readme = f.read()
    if BEGIN not in readme or END not in readme:
        sys.exit(f"sizing: {README} has no sizing markers")
    start, end = readme.index(BEGIN), readme.index(END) + len(END) + 1
    if mode == "--check":
        if readme[start:end] != text:
            sys.exit("sizing: deploy/README.md's sizing section is not what bench/results.json gives: "
                     "run `python3 bench/sizing.py --write`")
        return
    if mode != "--write":
        sys.exit(f"sizing: unknown option {mode}")
    with open(README, "w") as f:
        f.write(readme[:start] + text + readme[end:])


if __name__ == "__main__":
    main()
