#!/usr/bin/env python3
"""Container and pod attribution with real cgroups on this machine.

Servers run inside cgroups made here and named the way the kubelet, containerd, CRI-O and Docker
name theirs (cgroup v2 at /sys/fs/cgroup/unified, and a cgroup v1 hierarchy). A fake API server
answers the pod list request with tests/fixtures/k8s/apiserver-pods.json. Checked:
  - while the pod list is unavailable, capture goes on: requests are counted with container_id;
  - once it is served, series carry service_name = the owning workload and the k8s_* labels of
    the right pod, for each runtime layout; exact request counts (the client is the oracle, the
    server's own log confirms);
  - a pod that appears later is picked up; a Docker container not in any pod keeps container_id
    only; a process outside containers is reported as before;
  - the agent sends the service account token and asks only for its node's pods;
  - over https the pod list is trusted with the cluster CA only; the kubelet's /pods works too."""
import copy
import hashlib
import http.server
import json
import os
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.request
from urllib.parse import parse_qs, urlparse

from loupe_e2e import Agent, Workload, fail, require_root, select

FIXTURE = os.path.join(os.path.dirname(__file__), "../fixtures/k8s/apiserver-pods.json")
KUBELET_FIXTURE = os.path.join(os.path.dirname(__file__), "../fixtures/k8s/kubelet-pods.json")
NODE = "loupe-test-node"
TOKEN = "loupe-e2e-service-account-token"
V2 = "/sys/fs/cgroup/unified"
V1_PIDS = "/sys/fs/cgroup/pids"
V1_CPU = "/sys/fs/cgroup/cpu"
V1_MEMORY = "/sys/fs/cgroup/memory"
CPU_QUOTA_US, CPU_PERIOD_US = 50000, 100000  # 0.5 cores
MEMORY_LIMIT = 512 << 20


def container_id(name):
    return hashlib.sha256(name.encode()).hexdigest()  # how the fixtures' ids were made


# Late pod: not in the pod list when its container starts.
LATE_UID = "6d5c4b3a-2918-4076-9e5d-4c3b2a190807"
LATE_ID = container_id("inventory/api")

SERVER = r"""
import http.server, sys
log = open(sys.argv[1], "a", buffering=1)
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, fmt, *args):
        log.write(self.requestline + "\n")
server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


class Cgroup:
    """A cgroup directory made by the test (parents too) in one or more hierarchies (cgroup v1
    has one per controller, and the kubelet makes the same path in each), removed at the end."""

    made = []

    def __init__(self, roots, relative):
        self.paths = []
        for root in roots if isinstance(roots, (list, tuple)) else [roots]:
            parts = relative.split("/")
            for i in range(1, len(parts) + 1):
                d = os.path.join(root, *parts[:i])
                if not os.path.isdir(d):
                    os.mkdir(d)
                    Cgroup.made.append(d)
            self.paths.append(os.path.join(root, relative))

    def set(self, root, name, value):
        with open(os.path.join(self.paths[self.roots_index(root)], name), "w") as f:
            f.write(str(value))

    def roots_index(self, root):
        return next(i for i, p in enumerate(self.paths) if p.startswith(root + "/"))

    def enter(self):
        """For preexec: moves the calling process (the child, before exec) into this cgroup, as
        container runtimes do before they exec the container's process."""
        for path in self.paths:
            with open(os.path.join(path, "cgroup.procs"), "w") as f:
                f.write("0")

    @staticmethod
    def cleanup():
        for d in reversed(Cgroup.made):
            try:
                os.rmdir(d)
            except OSError:
                pass


class FakeApiServer:
    """Answers GET /api/v1/pods like kube-apiserver (or `path`: the kubelet's /pods); 503 until
    `serve` is called."""

    def __init__(self, tls_dir=None, path="/api/v1/pods"):
        self.pod_list = None
        self.requests = []  # (path, authorization header)
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append((self.path, self.headers.get("Authorization")))
                if outer.pod_list is None or urlparse(self.path).path != path:
                    body, status = b'{"kind":"Status","code":503}', 503
                else:
                    body, status = json.dumps(outer.pod_list).encode(), 200
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls_dir:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(os.path.join(tls_dir, "server.pem"), os.path.join(tls_dir, "server.key"))
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def serve(self, pod_list):
        self.pod_list = pod_list


def start_server(comm, cgroup):
    log = tempfile.NamedTemporaryFile(prefix=f"{comm}-", suffix=".log", delete=False).name
    w = Workload(comm, SERVER, log, preexec=cgroup.enter if cgroup else None)
    w.port = int(w.readline())
    w.log = log
    return w


def drive(workload, n):
    for _ in range(n):
        with urllib.request.urlopen(f"http://127.0.0.1:{workload.port}/orders", timeout=5) as r:
            if r.status != 200 or r.read() != b"ok":
                fail(f"{workload.comm}: bad answer")


def served_requests(workload):
    with open(workload.log) as f:
        return sum(1 for line in f if line.startswith("GET /orders"))


def count(samples, **labels):
    """Sum of http_server_request_duration_seconds_count over series with these labels; a label
    given as None must be absent."""
    total = 0
    for series, value in select(samples, "http_server_request_duration_seconds_count"):
        if all((series.get(k) is None) if v is None else series.get(k) == v for k, v in labels.items()):
            total += value
    return total


def wait_for(agent, predicate, what, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        samples = agent.metrics()
        if predicate(samples):
            return samples
        time.sleep(0.3)
    fail(f"timed out waiting for {what}:\n" + agent.logs()[-3000:])


def make_tls(directory):
    """A cluster CA, an API server certificate it signs for 127.0.0.1, and an unrelated CA."""
    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=loupe-test-ca",
            "-keyout", "ca.key", "-out", "ca.crt")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=kube-apiserver",
            "-keyout", "server.key", "-out", "server.csr")
    with open(os.path.join(directory, "san.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", "san.ext", "-out", "server.pem")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=other-ca",
            "-keyout", "other.key", "-out", "other.crt")


def check_https(pod_list, workload, labels, token_file):
    """The in-cluster path: https with the service account's CA. A server whose certificate the
    CA does not sign is refused, counted, and capture goes on without pod labels."""
    tls_dir = tempfile.mkdtemp(prefix="loupe-tls-")
    try:
        make_tls(tls_dir)
        api = FakeApiServer(tls_dir)
        api.serve(pod_list)
        url = f"https://127.0.0.1:{api.port}/api/v1/pods?fieldSelector=spec.nodeName={NODE}"
        common = ["--comm", workload.comm, "--kubernetes", "on", "--k8s-pods-url", url,
                  "--k8s-node-name", NODE, "--k8s-token-file", token_file, "--k8s-refresh-seconds", "2"]
        agent = Agent(*common, "--k8s-ca-file", os.path.join(tls_dir, "ca.crt"))
        wait_for(agent, lambda s: any(v >= 1 for _, v in select(s, "loupe_k8s_pod_list_requests_total", result="ok")),
                 "a pod list over https")
        drive(workload, 3)
        wait_for(agent, lambda s: count(s, **labels) == 3, "pod labels over https")
        agent.stop()
        if not api.requests or api.requests[0][1] != f"Bearer {TOKEN}":
            fail(f"https pod list requests: {api.requests}")

        agent = Agent(*common, "--k8s-ca-file", os.path.join(tls_dir, "other.crt"))
        wait_for(agent, lambda s: any(v >= 1 for _, v in select(s, "loupe_k8s_pod_list_requests_total", result="error")),
                 "a refused https certificate")
        drive(workload, 2)
        samples = wait_for(agent, lambda s: count(s, service_name=workload.comm) == 2, "requests without metadata")
        if any(v for _, v in select(samples, "loupe_k8s_pod_list_requests_total", result="ok")):
            fail("a certificate the CA does not sign was accepted")
        if count(samples, service_name=workload.comm, k8s_pod_name=None) != 2:
            fail("requests under a refused pod list should carry container_id only")
        agent.stop()
        print(f"ok: https pod list with the CA; refused with another CA ({len(api.requests)} requests)")
    finally:
        shutil.rmtree(tls_dir, ignore_errors=True)


def check_kubelet(workload, labels):
    """The kubelet's /pods as the source (--k8s-pods-url): the same attribution."""
    with open(KUBELET_FIXTURE) as f:
        pod_list = json.load(f)
    kubelet = FakeApiServer(path="/pods")
    kubelet.serve(pod_list)
    agent = Agent("--comm", workload.comm, "--kubernetes", "on", "--k8s-node-name", NODE,
                  "--k8s-pods-url", f"http://127.0.0.1:{kubelet.port}/pods", "--k8s-refresh-seconds", "2")
    wait_for(agent, lambda s: any(v >= 1 for _, v in select(s, "loupe_k8s_pod_list_requests_total", result="ok")),
             "a pod list from the kubelet")
    drive(workload, 4)
    wait_for(agent, lambda s: count(s, **labels) == 4, "pod labels from the kubelet's pod list")
    agent.stop()
    print(f"ok: kubelet /pods source ({len(kubelet.requests)} requests)")


def main():
    require_root()
    if not os.path.exists(os.path.join(V2, "cgroup.procs")) or not os.path.isdir(V1_PIDS):
        fail(f"needs cgroup v2 at {V2} and the v1 pids hierarchy at {V1_PIDS}")
    with open(FIXTURE) as f:
        pod_list = json.load(f)

    checkout_id = container_id("checkout/app")
    orders_id = container_id("orders-db/postgres")
    agent_id = container_id("node-agent/agent")
    docker_id = hashlib.sha256(b"plain docker container").hexdigest()
    layouts = {
        # containerd, systemd cgroup driver, Burstable pod (cgroup v2)
        "lk8s-checkout": Cgroup(V2, "kubepods.slice/kubepods-burstable.slice/"
                                    "kubepods-burstable-pod3f1c2a9e_5b7d_4e2a_9c1b_2d3e4f5a6b7c.slice/"
                                    f"cri-containerd-{checkout_id}.scope"),
        # CRI-O, systemd driver, Guaranteed pod: no QoS slice (cgroup v2)
        "lk8s-ordersdb": Cgroup(V2, "kubepods.slice/kubepods-pod8a7b6c5d_4e3f_4a2b_9c8d_7e6f5a4b3c2d.slice/"
                                    f"crio-{orders_id}.scope"),
        # containerd, cgroupfs driver, on cgroup v1 hierarchies, with CPU and memory limits
        "lk8s-nodeagent": Cgroup([V1_PIDS, V1_CPU, V1_MEMORY],
                                 f"kubepods/burstable/podc0ffee00-1234-4abc-8def-0123456789ab/{agent_id}"),
        # a Docker container that is no pod's
        "lk8s-docker": Cgroup(V2, f"system.slice/docker-{docker_id}.scope"),
        # a pod the pod list does not know yet (containerd, cgroupfs driver, cgroup v2)
        "lk8s-late": Cgroup(V2, f"kubepods/burstable/pod{LATE_UID}/{LATE_ID}"),
        "lk8s-host": None,
    }
    limited = layouts["lk8s-nodeagent"]
    limited.set(V1_CPU, "cpu.cfs_period_us", CPU_PERIOD_US)
    limited.set(V1_CPU, "cpu.cfs_quota_us", CPU_QUOTA_US)
    limited.set(V1_MEMORY, "memory.limit_in_bytes", MEMORY_LIMIT)
    api = FakeApiServer()
    token_dir = tempfile.mkdtemp(prefix="loupe-sa-")
    with open(os.path.join(token_dir, "token"), "w") as f:
        f.write(TOKEN + "\n")
    workloads = {}
    agent = None
    try:
        for comm, cgroup in layouts.items():
            workloads[comm] = start_server(comm, cgroup)
        agent = Agent("--comm", ",".join(layouts), "--kubernetes", "on",
                      "--k8s-pods-url", f"http://127.0.0.1:{api.port}/api/v1/pods?fieldSelector=spec.nodeName={NODE}",
                      "--k8s-node-name", NODE, "--k8s-token-file", os.path.join(token_dir, "token"),
                      "--k8s-refresh-seconds", "2")

        # 1. The pod list is unavailable: nothing is lost, containers are told apart by id.
        for w in workloads.values():
            drive(w, 5)
        samples = wait_for(agent, lambda s: count(s, service_name="lk8s-host") == 5 and
                           count(s, service_name="lk8s-checkout") == 5, "requests before metadata")
        if count(samples, service_name="lk8s-checkout", container_id=checkout_id, k8s_pod_name=None) != 5:
            fail("without metadata the checkout requests should carry container_id only")
        if count(samples, service_name="lk8s-nodeagent", container_id=agent_id) != 5:
            fail("cgroup v1 container not attributed by id: " + str(select(samples, "http_server_request_duration_seconds_count")))
        if count(samples, service_name="lk8s-host", container_id=None) != 5:
            fail("a host process must carry no container_id")
        if not [v for l, v in select(samples, "loupe_k8s_pod_list_requests_total", result="error") if v >= 1]:
            fail("the failed pod list request is not counted")

        # 2. The pod list is served: the next requests carry the pod's identity.
        api.serve(pod_list)
        wait_for(agent, lambda s: any(v >= 1 for _, v in select(s, "loupe_k8s_pod_list_requests_total", result="ok")),
                 "a successful pod list request")
        for w in workloads.values():
            drive(w, 7)
        expected = {
            "lk8s-checkout": dict(service_name="checkout", container_id=checkout_id, k8s_namespace_name="shop",
                                  k8s_pod_name="checkout-7d9f8b6c5d-x2x7q", k8s_container_name="app",
                                  k8s_node_name=NODE),
            "lk8s-ordersdb": dict(service_name="orders-db", container_id=orders_id, k8s_namespace_name="shop",
                                  k8s_pod_name="orders-db-0", k8s_container_name="postgres", k8s_node_name=NODE),
            "lk8s-nodeagent": dict(service_name="node-agent", container_id=agent_id,
                                   k8s_namespace_name="kube-system", k8s_pod_name="node-agent-5jq2k",
                                   k8s_container_name="agent", k8s_node_name=NODE),
        }
        samples = wait_for(agent, lambda s: all(count(s, **labels) == 7 for labels in expected.values()) and
                           all(count(s, service_name=c) == 12 for c in ("lk8s-docker", "lk8s-late", "lk8s-host")),
                           "all requests of the second round")
        for comm, labels in expected.items():
            if count(samples, service_name=comm) != 5:
                fail(f"{comm}: the 5 requests before metadata should stay under the process name")
            if served_requests(workloads[comm]) != 12:
                fail(f"{comm}: the server logged {served_requests(workloads[comm])} requests, not 12")
        if count(samples, service_name="lk8s-docker", container_id=docker_id, k8s_pod_name=None) != 12:
            fail("docker container: " + str(select(samples, "http_server_request_duration_seconds_count",
                                                   service_name="lk8s-docker")))
        if count(samples, service_name="lk8s-host", container_id=None) != 12:
            fail("host process: " + str(select(samples, "http_server_request_duration_seconds_count",
                                               service_name="lk8s-host")))
        if count(samples, service_name="lk8s-late", container_id=LATE_ID, k8s_pod_name=None) != 12:
            fail("late container should still carry its id only")

        # Resources follow the same identity (sampled every second).
        def resources_attributed(s):
            return all(select(s, "loupe_processes", **labels) and
                       select(s, "process_cpu_time_seconds_total", **labels) for labels in expected.values())
        samples = wait_for(agent, resources_attributed, "resource series with pod labels")
        for labels in expected.values():
            live = sum(v for _, v in select(samples, "loupe_processes", **labels))
            if live != 1:
                fail(f"loupe_processes{labels} = {live}, expected 1")

        # The container's limits (the values the test wrote into its cgroup) are exported, and
        # utilisation is a share of them, not of the node.
        agent_labels = expected["lk8s-nodeagent"]
        def one(name, labels):
            values = [v for _, v in select(samples, name, **labels)]
            if len(values) != 1:
                fail(f"{name}{labels}: {values}")
            return values[0]
        if one("loupe_container_cpu_limit_cores", agent_labels) != CPU_QUOTA_US / CPU_PERIOD_US:
            fail("CPU limit of the container")
        if one("loupe_container_memory_limit_bytes", agent_labels) != MEMORY_LIMIT:
            fail("memory limit of the container")
        rss = one("process_memory_usage_bytes", agent_labels)
        ratio = one("loupe_container_memory_limit_utilization_ratio", agent_labels)
        if abs(ratio - rss / MEMORY_LIMIT) > 1e-9:
            fail(f"memory utilisation {ratio} is not RSS {rss} / the limit {MEMORY_LIMIT}")
        cores = one("loupe_process_cpu_utilization_cores", agent_labels)
        cpu_share = one("loupe_container_cpu_limit_utilization_ratio", agent_labels)
        if abs(cpu_share - cores / (CPU_QUOTA_US / CPU_PERIOD_US)) > 1e-9:
            fail(f"CPU utilisation {cpu_share} is not {cores} cores / the quota")
        if select(samples, "loupe_container_cpu_limit_cores", service_name="checkout"):
            fail("a container without limits has a limit gauge")

        # 3. A pod that appears later is picked up at the next refresh.
        late = copy.deepcopy(pod_list["items"][0])
        late["metadata"].update(name="inventory-5f6d7c8b9a-z9k4m", namespace="shop", uid=LATE_UID,
                                labels={"pod-template-hash": "5f6d7c8b9a"})
        late["metadata"]["ownerReferences"][0]["name"] = "inventory-5f6d7c8b9a"
        late["status"]["containerStatuses"] = [{"name": "api", "containerID": f"containerd://{LATE_ID}",
                                                "ready": True, "restartCount": 0, "image": "inventory:3",
                                                "state": {"running": {}}}]
        del late["status"]["initContainerStatuses"]
        api.serve({**pod_list, "items": pod_list["items"] + [late]})
        wait_for(agent, lambda s: any(v == 7 for _, v in select(s, "loupe_k8s_pods")), "7 pods listed")
        drive(workloads["lk8s-late"], 4)
        late_labels = dict(service_name="inventory", container_id=LATE_ID, k8s_namespace_name="shop",
                           k8s_pod_name="inventory-5f6d7c8b9a-z9k4m", k8s_container_name="api")
        samples = wait_for(agent, lambda s: count(s, **late_labels) == 4, "the late pod's requests")
        if count(samples, service_name="lk8s-late") != 12:
            fail("the late container's earlier requests were lost")

        # The API and `loupe top` name a pod's service "<namespace>/<pod>/<container>".
        _, services = agent.api("/api/v1/services")
        rows = {s["name"]: s for s in services["services"]}
        checkout = rows.get("shop/checkout-7d9f8b6c5d-x2x7q/app")
        if not checkout or checkout.get("labels") != expected["lk8s-checkout"] or "labels" in rows.get("lk8s-host", {}):
            fail(f"/api/v1/services rows: {sorted(rows)} {checkout}")
        if checkout["server"]["requests_total"] != 7:
            fail(f"/api/v1/services checkout requests: {checkout['server']}")
        status, endpoints = agent.api("/api/v1/services/shop/checkout-7d9f8b6c5d-x2x7q/app/endpoints")
        if status != 200 or [e["route"] for e in endpoints["endpoints"]] != ["/orders"]:
            fail(f"endpoints of a pod's service: {status} {endpoints}")

        # Every pod list request asked for this node's pods, with the token.
        for path, authorization in api.requests:
            if parse_qs(urlparse(path).query).get("fieldSelector") != [f"spec.nodeName={NODE}"]:
                fail(f"pod list request without this node's field selector: {path}")
            if authorization != f"Bearer {TOKEN}":
                fail(f"pod list request without the token: {authorization!r}")
        agent.stop()
        agent = None
        check_https(pod_list, workloads["lk8s-checkout"], expected["lk8s-checkout"],
                    os.path.join(token_dir, "token"))
        check_kubelet(workloads["lk8s-ordersdb"], expected["lk8s-ordersdb"])
        print(f"ok: {len(expected) + 3} processes attributed across containerd/CRI-O/Docker, cgroup v1 and v2; "
              f"{len(api.requests)} pod list requests")
    finally:
        if agent:
            agent._kill()
        for w in workloads.values():
            w.kill()
            os.unlink(w.log)
        time.sleep(0.1)  # killed processes leave their cgroups
        Cgroup.cleanup()
        shutil.rmtree(token_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
