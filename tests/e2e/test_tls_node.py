#!/usr/bin/env python3
"""Node (this machine's /usr/bin/node has OpenSSL linked in): an https server and a fetch client,
both started after the agent. Node's TLSWrap hands records to OpenSSL through memory BIOs, so no
SSL call makes a socket call: each SSL* is tied to the connection whose records its thread read
last (bio_ties). loupe counts both sides over TLS exactly, against what the server served and
the client received, with url_scheme="https"; no plaintext is counted as http, and no query
string leaks."""
import os
import shutil
import tempfile

from loupe_e2e import Agent, Workload, fail, require_root, self_signed_certificate
from test_tls_python import check_both_sides, exchanged, wait_for_probed_library

SERVER = r'''
const fs = require("fs"), https = require("https"), readline = require("readline");
const [cert, key] = process.argv.slice(1);
const counts = {};
const server = https.createServer({cert: fs.readFileSync(cert), key: fs.readFileSync(key)}, (req, res) => {
  const path = req.url.split("?")[0];
  req.on("data", () => {});
  req.on("end", () => {
    const status = req.method === "POST" ? 201 : (path === "/ok" || path.startsWith("/items/") ? 200 : 404);
    const name = `${req.method} ${path} ${status}`;
    counts[name] = (counts[name] || 0) + 1;  // before the client can see the answer
    const body = Buffer.alloc(status === 200 ? 100 : 10, "x");
    res.writeHead(status, {"Content-Length": body.length});
    res.end(body);
  });
});
server.listen(0, "127.0.0.1", () => console.log(server.address().port));
readline.createInterface({input: process.stdin}).on("line", () => console.log(JSON.stringify(counts)));
'''

CLIENT = r'''
process.env.NODE_TLS_REJECT_UNAUTHORIZED = "0";  // the test's self-signed certificate
const port = process.argv[1];
const counts = {};
async function exchange(method, path, body) {
  const r = await fetch(`https://127.0.0.1:${port}${path}`, {method, body});
  await r.arrayBuffer();
  const name = `${method} ${path.split("?")[0]} ${r.status}`;
  counts[name] = (counts[name] || 0) + 1;
}
(async () => {
  for (let i = 0; i < 100; i++) {
    await exchange("GET", "/ok?token=secret");
    await exchange("GET", `/items/${i}`);
    if (i % 10 === 0) {
      await exchange("GET", "/missing");
      await exchange("POST", "/upload", "y".repeat(5000));
    }
  }
  console.log(JSON.stringify(counts));
})();
'''


def main():
    require_root()
    node = shutil.which("node")
    if not node:
        fail("node is needed")
    work = tempfile.mkdtemp(prefix="loupe-tls-node-")
    cert, key = self_signed_certificate(work)

    agent = Agent("--comm", "nodetlsserver,nodetlsclient")
    server = Workload("nodetlsserver", SERVER, cert, key, python=node, code_flag="-e")
    port = int(server.readline())
    wait_for_probed_library(agent)

    client = Workload("nodetlsclient", CLIENT, port, python=node, code_flag="-e")
    client_counts, served, text, samples = exchanged(agent, server, client, 60)
    _, body = agent.api("/api/v1/agent")
    print("tls:", {k: body["tls"][k] for k in ("connections", "untied_calls", "bio_ties")})

    check_both_sides(samples, text, "nodetlsserver", "nodetlsclient", port, served, client_counts)
    if body["tls"]["bio_ties"] < 2:
        fail(f"no memory-BIO ties counted: {body['tls']}")
    client.kill()
    server.kill()
    agent.stop()
    print("tls node: ok")


if __name__ == "__main__":
    main()
