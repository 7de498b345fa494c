#!/usr/bin/env python3
"""One-in-flight HTTP put latency through a follower and straight to the leader, and the
connections the leader accepted meanwhile, for each of several `ringraft` binaries in the same
run (alternating, REPS rounds). A throwaway 3-node cluster on loopback per binary and round,
killed by PID at the end.

    STRATEGY=MemFirst REPS=4 python3 tests/client_support/forward_latency.py 1000 \
        before /path/to/old/ringraft after target/release/ringraft
"""
import http.client, json, os, shutil, signal, socket, subprocess, sys, tempfile, time

def free_ports(n):
    ss = [socket.socket() for _ in range(n)]
    for s in ss: s.bind(("127.0.0.1", 0))
    ps = [s.getsockname()[1] for s in ss]
    for s in ss: s.close()
    return ps

def cfg(d, i, ports):
    members = "".join(f'  {{ id = {j+1}, address = "127.0.0.1:{p}", role = 1, status = 2 }},\n' for j,(p,_) in enumerate(ports))
    return f'''[cluster]
node_id = {i}
listen_address = "127.0.0.1:{ports[i-1][0]}"
initial_cluster = [
{members}]
db_root_dir = "{d}/db"
log_dir = "{d}/logs"
[raft]
election_timeout_ms_min = 600
election_timeout_ms_max = 1200
heartbeat_interval_ms = 100
[raft.persistence]
strategy = "{os.environ.get("STRATEGY", "DiskFirst")}"
flush_policy = "Immediate"
[network]
request_timeout_ms = 3000
[monitoring]
metrics_port = {ports[i-1][1]}
[runtime]
cores = 1
shards_per_node = 1
'''

def get(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", path); r = c.getresponse(); b = r.read(); c.close(); return r.status, b

def accepted(mport):
    _, b = get(mport, "/metrics")
    return sum(int(l.split()[-1]) for l in b.decode().splitlines() if l.startswith("ringraft_net_connections_accepted"))

def run(binary, n, label):
    d = tempfile.mkdtemp(prefix="fwdbench-")
    f = free_ports(6); ports = [(f[0],f[1]),(f[2],f[3]),(f[4],f[5])]
    procs = []
    try:
        for i in (1,2,3):
            open(f"{d}/n{i}.toml","w").write(cfg(d,i,ports))
            procs.append(subprocess.Popen([binary,"server","--config",f"{d}/n{i}.toml"],stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL))
        leader = None; t0 = time.time()
        while time.time()-t0 < 20 and leader is None:
            time.sleep(0.1)
            for i in (1,2,3):
                try:
                    st, b = get(ports[i-1][1], "/status"); v = json.loads(b)
                    if v["shards"][0]["role"] == "Leader": leader = i
                except Exception: pass
        assert leader, "no leader"
        fol = 1 if leader != 1 else 2
        def put(k):
            body = json.dumps({"key": k, "value": "v"*100})
            t = time.perf_counter()
            c.request("POST", "/put", body, {"Content-Type": "application/json"})
            r = c.getresponse(); r.read()
            assert r.status == 200, r.status
            return time.perf_counter()-t
        out = []
        for target, name in ((fol, "via-follower"), (leader, "direct-to-leader")):
            c = http.client.HTTPConnection("127.0.0.1", ports[target-1][0], timeout=5)
            for i in range(50): put(f"warm{i}")
            a0 = accepted(ports[leader-1][1])
            lat = sorted(put(f"{name}{i}") for i in range(n))
            a1 = accepted(ports[leader-1][1])
            c.close()
            p = lambda q: lat[min(len(lat)-1, int(q*len(lat)))]*1e6
            out.append(f"{name} p50={p(0.5):.0f}us p90={p(0.9):.0f}us p99={p(0.99):.0f}us leader_accepts={a1-a0}")
        print(f"{label}: n={n} " + " | ".join(out), flush=True)
    finally:
        for pr in procs:
            pr.kill(); pr.wait()
        shutil.rmtree(d, ignore_errors=True)

if __name__ == "__main__":
    n = int(sys.argv[1]); pairs = sys.argv[2:]
    for rep in range(int(os.environ.get('REPS', '3'))):
        for j in range(0, len(pairs), 2):
            run(pairs[j+1], n, pairs[j])
