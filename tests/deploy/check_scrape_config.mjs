// Checks deploy/prometheus/kubernetes-scrape.yml with promtool, around a limit of Debian's build:
// Debian builds Prometheus without Kubernetes service discovery, so its `promtool check config`
// rejects any kubernetes_sd_configs block as an unknown field.
//   PROMTOOL=/usr/bin/promtool node check_scrape_config.mjs CONFIG
// 1. When promtool knows kubernetes_sd_configs, `promtool check config CONFIG` as it is.
// 2. Checks each kubernetes_sd_configs entry (known keys, a valid role, namespaces.names) and that
//    every __meta_kubernetes_* label the relabelling reads exists for that role, since a misspelt
//    meta label silently matches nothing (promtool would not notice either).
// 3. Checks that the job selects what deploy/kubernetes/ deploys: namespace loupe, pod label
//    app.kubernetes.io/name=loupe, container port named metrics, instance = node name.
// 4. Rewrites the config with each kubernetes_sd_configs replaced by file_sd_configs over
//    targets shaped as the pod role produces them, then runs `promtool check config` on it
//    (relabel regexes, rule files, everything else) and `promtool check service-discovery`, which
//    applies the real relabelling: only the running agent pod's metrics port may remain, named
//    after its node.
// Exit status 1 with a FAIL line per problem.

import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import yaml from "js-yaml";

const configPath = process.argv[2];
if (!configPath) {
  console.error("usage: [PROMTOOL=promtool] node check_scrape_config.mjs CONFIG");
  process.exit(2);
}
const promtool = process.env.PROMTOOL || "promtool";

let problems = 0;
const fail = (msg) => {
  problems++;
  console.log(`FAIL  ${configPath}: ${msg}`);
};

// https://prometheus.io/docs/prometheus/latest/configuration/configuration/#kubernetes_sd_config
const sdKeys = new Set([
  "api_server", "role", "kubeconfig_file", "namespaces", "selectors", "attach_metadata",
  "basic_auth", "authorization", "oauth2", "follow_redirects", "enable_http2", "tls_config",
  "proxy_url", "no_proxy", "proxy_from_environment", "proxy_connect_header",
]);
const roles = new Set(["node", "service", "pod", "endpoints", "endpointslice", "ingress"]);
// Meta labels of role: pod (exact names, and prefixes followed by a sanitised label/annotation name).
const podMeta = new Set([
  "__meta_kubernetes_namespace", "__meta_kubernetes_pod_name", "__meta_kubernetes_pod_ip",
  "__meta_kubernetes_pod_container_init", "__meta_kubernetes_pod_container_name",
  "__meta_kubernetes_pod_container_id", "__meta_kubernetes_pod_container_image",
  "__meta_kubernetes_pod_container_port_name", "__meta_kubernetes_pod_container_port_number",
  "__meta_kubernetes_pod_container_port_protocol", "__meta_kubernetes_pod_ready",
  "__meta_kubernetes_pod_phase", "__meta_kubernetes_pod_node_name", "__meta_kubernetes_pod_host_ip",
  "__meta_kubernetes_pod_uid", "__meta_kubernetes_pod_controller_kind",
  "__meta_kubernetes_pod_controller_name",
]);
const podMetaPrefixes = [
  "__meta_kubernetes_pod_label_", "__meta_kubernetes_pod_labelpresent_",
  "__meta_kubernetes_pod_annotation_", "__meta_kubernetes_pod_annotationpresent_",
];

let config;
try {
  config = yaml.load(fs.readFileSync(configPath, "utf8"));
} catch (e) {
  fail(`not YAML: ${e.message}`);
  process.exit(1);
}

const jobs = config?.scrape_configs ?? [];
const loupe = jobs.find((j) => j.job_name === "loupe");
if (!loupe) fail("no scrape config with job_name loupe");
const loupeSds = Array.isArray(loupe?.kubernetes_sd_configs) ? [...loupe.kubernetes_sd_configs] : [];

// 2. Each Kubernetes discovery block, then its replacement for promtool.
for (const job of jobs) {
  const sds = job.kubernetes_sd_configs;
  if (sds === undefined) continue;
  if (!Array.isArray(sds) || sds.length === 0) {
    fail(`job ${job.job_name}: kubernetes_sd_configs must be a non-empty list`);
    continue;
  }
  const usedRoles = new Set();
  for (const sd of sds) {
    for (const key of Object.keys(sd ?? {}))
      if (!sdKeys.has(key)) fail(`job ${job.job_name}: unknown kubernetes_sd_configs key ${key}`);
    if (!roles.has(sd?.role)) fail(`job ${job.job_name}: role must be one of ${[...roles].join(", ")}, got ${sd?.role}`);
    usedRoles.add(sd?.role);
    if (sd?.namespaces !== undefined) {
      const ns = sd.namespaces;
      for (const key of Object.keys(ns ?? {}))
        if (!["names", "own_namespace"].includes(key)) fail(`job ${job.job_name}: unknown namespaces key ${key}`);
      if (ns?.names !== undefined && !(Array.isArray(ns.names) && ns.names.every((n) => typeof n === "string")))
        fail(`job ${job.job_name}: namespaces.names must be a list of strings`);
    }
  }
  // Only role pod is used here; its meta labels are checked exactly.
  if (usedRoles.size === 1 && usedRoles.has("pod")) {
    for (const rc of job.relabel_configs ?? [])
      for (const label of rc.source_labels ?? [])
        if (label.startsWith("__meta_kubernetes_") && !podMeta.has(label) &&
            !podMetaPrefixes.some((p) => label.startsWith(p) && label.length > p.length))
          fail(`job ${job.job_name}: ${label} is not a meta label of role pod`);
  }
  // promtool sees an equivalent discovery: a file of targets carrying the pod role's labels.
  delete job.kubernetes_sd_configs;
  job.file_sd_configs = [...(job.file_sd_configs ?? []), { files: ["kubernetes-pods.json"] }];
}

// 3. The job must find what deploy/kubernetes/ deploys (read before the rewrite above).
const matches = (regex, value) => {  // Prometheus anchors its regexes; a bad one is promtool's to report
  try {
    return new RegExp(`^(?:${regex})$`).test(value);
  } catch {
    return false;
  }
};
if (loupe) {
  const rcs = loupe.relabel_configs ?? [];
  const keeps = (label, value) => rcs.some((rc) => (rc.action ?? "replace") === "keep" &&
    (rc.source_labels ?? []).length === 1 && rc.source_labels[0] === label &&
    matches(rc.regex ?? "(.*)", value));
  if (!(loupeSds.length > 0 && loupeSds.every((s) => s?.role === "pod")))
    fail("job loupe must discover pods (kubernetes_sd_configs role: pod)");
  const names = loupeSds.flatMap((s) => s?.namespaces?.names ?? []);
  if (!(names.length === 1 && names[0] === "loupe")) fail("job loupe must look only in namespace loupe");
  if (!keeps("__meta_kubernetes_pod_label_app_kubernetes_io_name", "loupe"))
    fail("job loupe must keep pods labelled app.kubernetes.io/name=loupe");
  if (!keeps("__meta_kubernetes_pod_container_port_name", "metrics"))
    fail("job loupe must keep only the container port named metrics");
  if (!rcs.some((rc) => (rc.source_labels ?? [])[0] === "__meta_kubernetes_pod_node_name" &&
                        rc.target_label === "instance"))
    fail("job loupe must set instance from the node name");
}

function run(args) {  // promtool's exit status and combined output
  try {
    return { ok: true, out: execFileSync(promtool, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }) };
  } catch (e) {
    if (e.code === "ENOENT") {
      fail(`${promtool} not found (apt-get install prometheus, or set PROMTOOL)`);
      process.exit(1);
    }
    return { ok: false, out: `${e.stdout ?? ""}${e.stderr ?? ""}` };
  }
}
const indent = (text) => text.trim().split("\n").map((l) => `      ${l}`).join("\n");

// 1. The file as it is, when this promtool can read it.
const direct = run(["check", "config", configPath]);
if (direct.ok) {
  console.log(`ok    promtool check config ${configPath} (this promtool has Kubernetes discovery)`);
} else if (/field kubernetes_sd_configs not found/.test(direct.out)) {
  console.log(`note  ${promtool} is built without Kubernetes discovery (Debian's is); checking a file_sd equivalent`);
} else {
  fail(`promtool check config:\n${indent(direct.out)}`);
}

// 4. The same config over file_sd, in a scratch directory with the rule files it names.
const work = fs.mkdtempSync(path.join(os.tmpdir(), "loupe-scrape-"));
process.on("exit", () => fs.rmSync(work, { recursive: true, force: true }));
for (const rule of config.rule_files ?? []) {
  const from = path.resolve(path.dirname(configPath), rule);
  if (fs.existsSync(from)) fs.copyFileSync(from, path.join(work, path.basename(rule)));  // else promtool says so
}
config.rule_files = (config.rule_files ?? []).map((r) => path.basename(r));
// What role: pod yields in namespace loupe: one target per declared container port of each pod.
const pod = (ip, port, portName, app, phase, node) => ({
  targets: [`${ip}:${port}`],
  labels: {
    __meta_kubernetes_namespace: "loupe",
    __meta_kubernetes_pod_name: `${app}-${node}`,
    __meta_kubernetes_pod_label_app_kubernetes_io_name: app,
    __meta_kubernetes_pod_container_port_name: portName,
    __meta_kubernetes_pod_phase: phase,
    __meta_kubernetes_pod_node_name: node,
  },
});
fs.writeFileSync(path.join(work, "kubernetes-pods.json"), JSON.stringify([
  pod("10.0.0.5", 9464, "metrics", "loupe", "Running", "node-a"),   // the only one to scrape
  pod("10.0.0.5", 9999, "debug", "loupe", "Running", "node-a"),     // another port of the agent
  pod("10.0.0.6", 9464, "metrics", "loupe", "Pending", "node-b"),   // not running yet
  pod("10.0.0.7", 9464, "metrics", "other", "Running", "node-a"),   // someone else's pod
], null, 2));
const rewritten = path.join(work, path.basename(configPath));
fs.writeFileSync(rewritten, yaml.dump(config, { lineWidth: 120 }));
const checked = run(["check", "config", rewritten]);
if (checked.ok) console.log(`ok    promtool check config (file_sd equivalent of ${configPath})`);
else fail(`promtool check config on the file_sd equivalent:\n${indent(checked.out)}`);

if (loupe) {
  // promtool collects discovery results until the timeout; file_sd delivers at once.
  const sd = run(["check", "service-discovery", "--timeout=2s", rewritten, "loupe"]);
  let targets = null;
  try {
    targets = JSON.parse(sd.out.slice(sd.out.indexOf("["), sd.out.lastIndexOf("]") + 1));
  } catch {
    fail(`promtool check service-discovery gave no target list:\n${indent(sd.out)}`);
  }
  if (targets) {
    const kept = targets.map((t) => t.labels).filter((l) => Object.keys(l).length > 0);
    const want = { __address__: "10.0.0.5:9464", __metrics_path__: "/metrics", instance: "node-a", job: "loupe" };
    const got = kept.map((l) => Object.fromEntries(Object.keys(want).map((k) => [k, l[k]])));
    if (kept.length === 1 && JSON.stringify(got[0]) === JSON.stringify(want))
      console.log(`ok    promtool check service-discovery: of ${targets.length} discovered targets only the agent's metrics port is kept, instance=node-a`);
    else fail(`relabelling kept ${JSON.stringify(got)}, expected exactly ${JSON.stringify(want)}`);
  }
}
if (problems) process.exit(1);
