#!/usr/bin/env python3
"""Reads what bench/fleet.sh saved (the Consul double's request logs, the
sidecars' apply stamps, memory) and prints fleet.md's tables.

  fleet_stats.py mem          < lines "Pss Private_Dirty Private_Clean Anonymous" (kB)
  fleet_stats.py report DIR N...
"""
import json
import random
import statistics
import sys

FAMILIES = [
    ("/v1/health/state/", "detector (health/state)"),
    ("/v1/health/service/", "service reads (health/service)"),
    ("/v1/catalog/services", "catalog/services"),
    ("/v1/catalog/nodes", "cluster view (catalog/nodes)"),
    ("/v1/status/", "cluster view (status)"),
    ("/v1/agent/members", "cluster view (agent/members)"),
    ("/v1/agent/check/", "TTL check updates"),
    ("/v1/agent/service/register", "registrations"),
    ("/v1/agent/service/deregister", "deregistrations"),
    ("/v1/agent/checks", "anti-entropy"),
    ("/v1/agent/service/", "anti-entropy"),
    ("/v1/agent/services", "anti-entropy"),
    ("/v1/agent/self", "agent/self"),
]


def family(url):
    for prefix, name in FAMILIES:
        if url.startswith(prefix):
            return name
    return "other"


def load(path):
    """A saved request log; an empty one when it did not come whole (the
    run has failed then, and says so)."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return []


def sidecar_requests(path):
    """The sidecars' requests: not the control API's, not the seed agent's
    (the bench and the loader use only those)."""
    return [r for r in load(path) if r.get("agent") not in ("control", "seed")]


def start_of(path, agent, needle):
    """When (the double's clock, ms) the bench's own request containing
    needle reached it: the start of what is measured."""
    times = [r["time_ms"] for r in load(path) if r.get("agent") == agent and needle in r["url"]]
    return min(times) if times else None


def pct(values, p):
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, max(0, int(len(v) * p + 0.5) - 1))]


def by_family(reqs):
    out = {}
    for r in reqs:
        k = family(r["url"])
        out[k] = out.get(k, 0) + 1
    return out


def fmt_families(counts, scale):
    parts = sorted(counts.items(), key=lambda kv: -kv[1])
    return ", ".join("%s %.2f" % (k, v * scale) for k, v in parts)


def mem():
    rows = [list(map(int, line.split())) for line in sys.stdin if line.strip()]
    if not rows:
        print("0 0 0 0 0")
        return
    pss = [r[0] for r in rows]
    dirty = [r[1] for r in rows]
    clean = [r[2] for r in rows]
    anon = [r[3] for r in rows]
    print("%d %d %d %d %d" % (statistics.mean(pss), statistics.mean(dirty), max(dirty),
                              statistics.mean(clean), statistics.mean(anon)))


def buckets(reqs, t0, width=100):
    counts = {}
    for r in reqs:
        b = int((r["time_ms"] - t0) // width)
        counts[b] = counts.get(b, 0) + 1
    return counts


def chance_busiest(n, nb, trials=2000):
    """The busiest of nb buckets when n events fall independently and
    uniformly over them: its median and 95th percentile over trials (a
    fixed seed, so a report reads the same twice)."""
    rng = random.Random(16)
    tops = []
    for _ in range(trials):
        c = [0] * nb
        for _ in range(n):
            c[rng.randrange(nb)] += 1
        tops.append(max(c))
    tops.sort()
    return tops[len(tops) // 2], tops[int(len(tops) * 0.95)]


def report(d, sizes):
    meta = {}
    for n in sizes:
        try:
            with open("%s/meta-%s.txt" % (d, n)) as f:
                v = f.read().split()
        except OSError:
            v = ["0"] * 9
        meta[n] = dict(zip(["start_ms", "steady_ms", "restore_ms", "redeploy_ms", "pss",
                            "dirty", "dirty_max", "clean", "anon"], map(int, v)))

    print("## Steady state: what an idle sidecar asks of Consul")
    print()
    print("Requests a second at the agents per sidecar over %s s, nothing changing, by kind." %
          (meta[sizes[0]]["steady_ms"] // 1000))
    print()
    print("| sidecars | requests/s per sidecar | by kind (per sidecar per second) |")
    print("|---|---|---|")
    steady_rate = {}
    for n in sizes:
        reqs = sidecar_requests("%s/steady-%s.json" % (d, n))
        secs = meta[n]["steady_ms"] / 1000.0
        steady_rate[n] = len(reqs) / secs
        print("| %s | %.3f | %s |" % (n, len(reqs) / secs / int(n),
                                     fmt_families(by_family(reqs), 1.0 / secs / int(n))))
    print()

    print("## One catalog change")
    print()
    print("One upstream instance's check fails, then passes again. Requests: every "
          "sidecar request from the change until a second after the last sidecar applied it, "
          "less what the steady state would have sent in that time, per sidecar. Time: from "
          "the PUT to each sidecar's reload (its nginx file rendered and the reload command run).")
    print()
    print("| sidecars | change | requests per sidecar (net) | by kind, per sidecar | applied: p50 ms | p99 | last |")
    print("|---|---|---|---|---|---|---|")
    for n in sizes:
        for verb in ("fail", "pass"):
            reqs = sidecar_requests("%s/change-%s-%s.json" % (d, verb, n))
            try:
                lat = [float(x) for x in open("%s/change-%s-%s.lat" % (d, verb, n)) if x.strip()]
            except OSError:
                lat = []
            t0 = start_of("%s/change-%s-%s.json" % (d, verb, n), "seed", "/v1/agent/check/" + verb)
            if t0 is None or not lat:
                print("| %s | %s | n/a (the run failed here) | | | | |" % (n, verb))
                continue
            window = (max(r["time_ms"] for r in reqs) - t0) / 1000.0 if reqs else 0
            net = len(reqs) - steady_rate[n] * window
            print("| %s | %s | %.2f | %s | %.0f | %.0f | %.0f |" % (
                n, "instance fails" if verb == "fail" else "passes again", net / int(n),
                fmt_families(by_family(reqs), 1.0 / int(n)), pct(lat, 0.5), pct(lat, 0.99),
                max(lat) if lat else float("nan")))
    print()

    print("## Every agent restarted, -dev style (everything lost)")
    print()
    print("The sidecars' %s agents restart at once with nothing kept: each process is gone "
          "300 ms (every connection dropped), then answers reads from an empty view for "
          "FLEET_REJOIN_MS before it has rejoined the servers. Each sidecar finds its "
          "registration gone (after the reconnect, at its next TTL update, which is refused, "
          "or by anti-entropy) and registers again. Busiest 100 ms bucket against the average bucket from the restart to the "
          "last re-registration. By chance: the busiest bucket when as many registrations "
          "fall independently and uniformly over as many buckets (median and 95th percentile "
          "of 2,000 draws), the floor for sidecars that do not coordinate." % "all")
    print()
    print("| sidecars | all registered again after | registrations | busiest 100 ms / average (registrations) | by chance: busiest (p50, p95) | busiest / average (all requests) | requests per sidecar | by kind, per sidecar |")
    print("|---|---|---|---|---|---|---|---|")
    for n in sizes:
        reqs = sidecar_requests("%s/agents-%s.json" % (d, n))
        # The bench's first look at the catalog follows the restarts at once.
        t0 = start_of("%s/agents-%s.json" % (d, n), "seed", "/v1/catalog/service/gateway")
        if t0 is None:
            print("| %s | n/a (the run failed here) | | | | | | |" % n)
            continue
        regs = [r for r in reqs if family(r["url"]) == "registrations"]
        last = max((r["time_ms"] for r in regs), default=t0) - t0
        nb = max(1, int(last // 100) + 1)
        rb = buckets(regs, t0)
        ab = buckets([r for r in reqs if r["time_ms"] <= t0 + last], t0)
        ratio_r = max(rb.values()) / (len(regs) / nb) if regs else float("nan")
        n_all = sum(ab.values())
        ratio_a = max(ab.values()) / (n_all / nb) if n_all else float("nan")
        c50, c95 = chance_busiest(len(regs), nb)
        print("| %s | %.1f s | %d | %.1f (%d in one bucket, %.2f on average over %d) | %d, %d (%.1f×, %.1f×) | %.1f | %.1f | %s |" % (
            n, meta[n]["restore_ms"] / 1000.0, len(regs), ratio_r, max(rb.values()) if rb else 0,
            len(regs) / nb, nb, c50, c95, c50 / (len(regs) / nb), c95 / (len(regs) / nb),
            ratio_a, len(reqs) / int(n),
            fmt_families(by_family(reqs), 1.0 / int(n))))
    print()

    print("## Every sidecar restarted at once (a deploy)")
    print()
    print("| sidecars | all %d upstreams applied everywhere after | requests per sidecar | by kind, per sidecar | first start (from nothing) |" % 10)
    print("|---|---|---|---|---|")
    for n in sizes:
        reqs = sidecar_requests("%s/redeploy-%s.json" % (d, n))
        print("| %s | %.1f s | %.1f | %s | %.1f s |" % (
            n, meta[n]["redeploy_ms"] / 1000.0, len(reqs) / int(n),
            fmt_families(by_family(reqs), 1.0 / int(n)), meta[n]["start_ms"] / 1000.0))
    print()

    print("## Memory per node")
    print()
    print("From each sidecar's /proc/PID/smaps_rollup once all were synced: PSS (the shared "
          "libraries' pages divided among the processes that map them), private dirty (what "
          "this sidecar alone costs), anonymous (its heap and stacks).")
    print()
    print("| sidecars | PSS kB (mean) | private dirty kB (mean / max) | private clean kB | anonymous kB |")
    print("|---|---|---|---|---|")
    for n in sizes:
        m = meta[n]
        print("| %s | %d | %d / %d | %d | %d |" % (n, m["pss"], m["dirty"], m["dirty_max"],
                                                 m["clean"], m["anon"]))


if __name__ == "__main__":
    if sys.argv[1] == "mem":
        mem()
    elif sys.argv[1] == "report":
        report(sys.argv[2], sys.argv[3:])
    else:
        sys.exit("usage: fleet_stats.py mem | report DIR N...")
