// Validates every YAML document under deploy/kubernetes/ against the Kubernetes OpenAPI schemas
// (kubernetes-models) and the prometheus-operator CRD schemas (@kubernetes-models/prometheus-operator),
// then checks the facts the agent depends on (hostPID, tolerations, probes, capabilities...).
// No cluster is needed. Every problem is printed (FAIL, file, document, kind and name) and the exit
// status is 1 if there was any.
//   node tests/deploy/validate_manifests.mjs [DIR]      (DIR defaults to deploy/kubernetes)
//
// What the schemas do not catch: they check types, required fields and enums, but Kubernetes'
// published schemas allow unknown fields, so a misspelt optional field (hostPid) passes them. The
// facts below are checked by name for that reason.

import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import yaml from "js-yaml";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "../..");
const dir = path.resolve(process.argv[2] ?? path.join(repo, "deploy/kubernetes"));
const shown = (p) => (p.startsWith(repo + path.sep) ? path.relative(repo, p) : p);
const top = shown(dir);  // where problems that belong to no single file are reported

// apiVersion group -> package that has its models. Anything else is an unknown kind: a manifest
// nobody can validate offline is a manifest nobody has checked.
const packages = {
  core: "kubernetes-models",
  "apps": "kubernetes-models",
  "rbac.authorization.k8s.io": "kubernetes-models",
  "monitoring.coreos.com": "@kubernetes-models/prometheus-operator",
};
const clusterScoped = new Set(["Namespace", "ClusterRole", "ClusterRoleBinding"]);
const appLabel = ["app.kubernetes.io/name", "loupe"];
const namespace = "loupe";
const metricsPort = 9464;
// The least-privilege DaemonSet's capabilities: exactly these, each justified in the manifest.
const leastPrivilegeCaps = ["BPF", "DAC_READ_SEARCH", "PERFMON", "SYS_PTRACE", "SYS_RESOURCE"];

let failures = 0;
let validated = 0;
const fail = (where, message) => {
  failures++;
  console.log(`FAIL  ${where}: ${message}`);
};

function yamlFiles(root) {
  const out = [];
  for (const entry of fs.readdirSync(root, { withFileTypes: true })) {
    const p = path.join(root, entry.name);
    if (entry.isDirectory()) out.push(...yamlFiles(p));
    else if (/\.ya?ml$/.test(entry.name)) out.push(p);
  }
  return out.sort();
}

async function modelFor(apiVersion, kind) {
  if (typeof apiVersion !== "string" || typeof kind !== "string")
    throw new Error("apiVersion and kind must be strings");
  const slash = apiVersion.indexOf("/");
  const group = slash < 0 ? "core" : apiVersion.slice(0, slash);
  const pkg = packages[group];
  // The kind becomes a module path: allow only what a Kind can be.
  if (!pkg || !/^[a-z0-9.]*\/?v[0-9a-z]+$/.test(apiVersion) || !/^[A-Z][A-Za-z0-9]*$/.test(kind))
    throw new Error(`unknown kind ${apiVersion} ${kind}: no schema to validate it against`);
  let mod;
  try {
    mod = await import(`${pkg}/${apiVersion}/${kind}`);
  } catch (e) {
    if (e.code === "ERR_MODULE_NOT_FOUND" || e.code === "ERR_PACKAGE_PATH_NOT_EXPORTED")
      throw new Error(`unknown kind ${apiVersion} ${kind}: not in ${pkg}`);
    throw e;
  }
  const Model = mod[kind];
  if (!Model || Model.apiVersion !== apiVersion || Model.kind !== kind)
    throw new Error(`unknown kind ${apiVersion} ${kind}: ${pkg} has no such model`);
  return Model;
}

function schemaErrors(e) {
  if (!Array.isArray(e.errors)) return e.message;
  return e.errors
    .map((x) => `${x.instancePath || "/"} ${x.message}${x.params ? " " + JSON.stringify(x.params) : ""}`)
    .join("; ");
}

// ------------------------------------------------------------------------------------------------
// Load and validate every document.
const objects = [];  // {file, where, obj}
const files = yamlFiles(dir);
if (files.length === 0) {
  fail(dir, "no YAML file found");
}
for (const file of files) {
  const rel = shown(file);
  let docs;
  try {
    docs = yaml.loadAll(fs.readFileSync(file, "utf8"));
  } catch (e) {
    fail(rel, `not YAML: ${e.message}`);
    continue;
  }
  for (const [i, obj] of docs.entries()) {
    if (obj === null || obj === undefined) continue;  // an empty document (a trailing ---)
    const where = `${rel} (document ${i + 1}, ${obj?.kind ?? "no kind"} ${obj?.metadata?.name ?? "unnamed"})`;
    if (typeof obj !== "object" || Array.isArray(obj)) {
      fail(where, "not a Kubernetes object");
      continue;
    }
    let Model;
    try {
      Model = await modelFor(obj.apiVersion, obj.kind);
    } catch (e) {
      fail(where, e.message);
      continue;
    }
    try {
      new Model(obj).validate();
    } catch (e) {
      fail(where, `schema: ${schemaErrors(e)}`);
      continue;
    }
    validated++;
    objects.push({ file: rel, where, obj });
    console.log(`ok    ${rel}: ${obj.apiVersion} ${obj.kind} ${obj.metadata?.namespace ? obj.metadata.namespace + "/" : ""}${obj.metadata?.name}`);
  }
}

// ------------------------------------------------------------------------------------------------
// Product facts: what the agent needs, checked by field name.
function check(where, cond, message) {
  if (!cond) fail(where, message);
  return cond;
}
const sameSet = (a, b) => a.length === b.length && [...a].sort().every((x, i) => x === [...b].sort()[i]);

for (const { where, obj } of objects) {
  const md = obj.metadata ?? {};
  check(where, md.labels?.[appLabel[0]] === appLabel[1], `metadata.labels must have ${appLabel.join(": ")}`);
  if (clusterScoped.has(obj.kind)) {
    check(where, md.namespace === undefined, "cluster-scoped object must not set a namespace");
  } else {
    check(where, md.namespace === namespace, `must be in namespace ${namespace}`);
  }
}

const ofKind = (kind) => objects.filter((o) => o.obj.kind === kind);
const byName = (kind, name) => ofKind(kind).find((o) => o.obj.metadata.name === name);

check(top, byName("Namespace", namespace), `no Namespace ${namespace}`);
const sa = byName("ServiceAccount", "loupe");
check(top, sa, "no ServiceAccount loupe");

// RBAC: pods get/list/watch and nothing else (nodes/proxy only as a comment).
const role = byName("ClusterRole", "loupe");
if (check(top, role, "no ClusterRole loupe")) {
  const rules = role.obj.rules ?? [];
  check(role.where, rules.length === 1 && sameSet(rules[0].apiGroups ?? [], [""]) &&
        sameSet(rules[0].resources ?? [], ["pods"]) && sameSet(rules[0].verbs ?? [], ["get", "list", "watch"]),
        `must grant exactly get/list/watch on pods, got ${JSON.stringify(rules)}`);
}
const binding = byName("ClusterRoleBinding", "loupe");
if (check(top, binding, "no ClusterRoleBinding loupe")) {
  const b = binding.obj;
  check(binding.where, b.roleRef?.kind === "ClusterRole" && b.roleRef?.name === "loupe", "roleRef must be ClusterRole loupe");
  check(binding.where, (b.subjects ?? []).some((s) => s.kind === "ServiceAccount" && s.name === "loupe" && s.namespace === namespace),
        `subjects must include ServiceAccount ${namespace}/loupe`);
}

// DaemonSets: the privileged one and the least-privilege one.
const daemonSets = ofKind("DaemonSet");
check(top, daemonSets.length === 2,
      `expected 2 DaemonSets (privileged and least-privilege), found ${daemonSets.length}`);
const images = new Set();
let privileged = 0;
let leastPrivileged = 0;
for (const { file, where, obj } of daemonSets) {
  check(where, obj.metadata.name === "loupe", "both variants must be named loupe, so that applying one replaces the other");
  const pod = obj.spec.template.spec;
  const podLabels = obj.spec.template.metadata?.labels ?? {};
  check(where, podLabels[appLabel[0]] === appLabel[1], `pod template labels must have ${appLabel.join(": ")}`);
  check(where, obj.spec.selector?.matchLabels?.[appLabel[0]] === appLabel[1], "selector must match app.kubernetes.io/name: loupe");
  check(where, pod.hostPID === true, "spec.template.spec.hostPID must be true (the agent sees every process of the node)");
  check(where, (pod.tolerations ?? []).some((t) => t.operator === "Exists" && !t.key && !t.effect),
        "needs a toleration {operator: Exists} so that it runs on every node");
  check(where, pod.priorityClassName === "system-node-critical", "priorityClassName must be system-node-critical");
  check(where, pod.serviceAccountName === "loupe", "serviceAccountName must be loupe");
  const containers = pod.containers ?? [];
  if (!check(where, containers.length === 1, `expected one container, found ${containers.length}`)) continue;
  const c = containers[0];
  images.add(c.image);

  const args = c.args ?? [];
  const sub = args.indexOf("agent");
  check(where, sub >= 0, `args must run the agent subcommand, got ${JSON.stringify(args)}`);
  const lf = args.indexOf("--log-format");
  check(where, lf >= 0 && lf < sub && args[lf + 1] === "json", "--log-format json must come before the subcommand (it is a global flag)");
  const li = args.indexOf("--listen");
  check(where, li > sub && args[li + 1] === `0.0.0.0:${metricsPort}`, `--listen 0.0.0.0:${metricsPort} must follow the subcommand`);

  const env = Object.fromEntries((c.env ?? []).map((e) => [e.name, e]));
  check(where, env.LOUPE_K8S_NODE_NAME?.valueFrom?.fieldRef?.fieldPath === "spec.nodeName",
        "env LOUPE_K8S_NODE_NAME must come from fieldRef spec.nodeName");
  check(where, env.LOUPE_KUBERNETES?.value === "on", "env LOUPE_KUBERNETES must be on");

  const port = (c.ports ?? []).find((p) => p.name === "metrics");
  check(where, port?.containerPort === metricsPort, `container port metrics must be ${metricsPort}`);
  const probePort = (probe) => probe?.httpGet?.port === "metrics" || probe?.httpGet?.port === metricsPort;
  check(where, c.readinessProbe?.httpGet?.path === "/health/ready" && probePort(c.readinessProbe), "readinessProbe must GET /health/ready on the metrics port");
  check(where, c.livenessProbe?.httpGet?.path === "/health/live" && probePort(c.livenessProbe), "livenessProbe must GET /health/live on the metrics port");
  check(where, c.startupProbe?.httpGet?.path === "/health/startup" && probePort(c.startupProbe), "startupProbe must GET /health/startup on the metrics port");
  check(where, c.resources?.requests?.memory && c.resources?.limits?.memory, "memory request and limit must be set");
  check(where, c.resources?.limits?.cpu === undefined, "no CPU limit (throttling the agent drops events)");

  // Every mount has a volume, and the host paths the agent reads are mounted as intended.
  const volumes = Object.fromEntries((pod.volumes ?? []).map((v) => [v.name, v]));
  const mounts = Object.fromEntries((c.volumeMounts ?? []).map((m) => [m.mountPath, m]));
  for (const m of c.volumeMounts ?? [])
    check(where, volumes[m.name], `volumeMount ${m.mountPath} names volume ${m.name}, which does not exist`);
  const hostMount = (mountPath, readOnly) => {
    const m = mounts[mountPath];
    if (!check(where, m, `must mount ${mountPath}`)) return;
    check(where, volumes[m.name]?.hostPath?.path === mountPath, `${mountPath} must be the host's (hostPath ${mountPath})`);
    if (readOnly) check(where, m.readOnly === true, `${mountPath} must be mounted read-only`);
  };
  hostMount("/sys/kernel/tracing", false);
  hostMount("/sys/fs/cgroup", true);
  hostMount("/sys/kernel/btf", true);
  check(where, !Object.values(volumes).some((v) => v.hostPath?.path === "/proc" || v.hostPath?.path?.startsWith("/sys/kernel/debug")),
        "no host /proc (hostPID gives it) and no debugfs mount");

  // The variant is told by where it lives, not by what it says, so that a least-privilege
  // manifest that turned privileged fails instead of passing as the privileged one.
  const sc = c.securityContext ?? {};
  if (!file.split(path.sep).includes("least-privilege")) {
    check(where, sc.privileged === true, "the default DaemonSet is the privileged variant");
    privileged++;
    hostMount("/sys/fs/bpf", false);
  } else {
    leastPrivileged++;
    check(where, sc.privileged === false, "least-privilege variant must say privileged: false");
    check(where, JSON.stringify(obj).indexOf('"privileged":true') < 0, "least-privilege variant must not contain privileged: true anywhere");
    check(where, sc.allowPrivilegeEscalation === false, "allowPrivilegeEscalation must be false");
    check(where, sc.readOnlyRootFilesystem === true, "readOnlyRootFilesystem must be true");
    check(where, sameSet(sc.capabilities?.drop ?? [], ["ALL"]), "capabilities.drop must be [ALL]");
    check(where, sameSet(sc.capabilities?.add ?? [], leastPrivilegeCaps),
          `capabilities.add must be exactly ${leastPrivilegeCaps.join(", ")}, got ${JSON.stringify(sc.capabilities?.add ?? [])}`);
    check(where, sc.seccompProfile?.type === "Unconfined", "seccompProfile must be Unconfined (RuntimeDefault blocks bpf(2) on some runtimes)");
    check(where, obj.spec.template.metadata?.annotations?.["container.apparmor.security.beta.kubernetes.io/" + c.name] === "unconfined",
          "the AppArmor annotation must make the container unconfined");
    check(where, mounts["/sys/kernel/tracing"]?.readOnly === true, "tracefs is read-only without CAP_SYS_ADMIN");
  }
}
check(top, privileged === 1 && leastPrivileged === 1,
      `expected one privileged and one least-privilege DaemonSet, found ${privileged} and ${leastPrivileged}`);
check(top, images.size === 1, `both DaemonSets must run the same image, found ${JSON.stringify([...images])}`);

// Service: headless, selects the agent pods, port metrics.
const svc = byName("Service", "loupe");
if (check(top, svc, "no Service loupe")) {
  const s = svc.obj.spec;
  check(svc.where, s.clusterIP === "None", "must be headless (clusterIP: None)");
  check(svc.where, s.selector?.[appLabel[0]] === appLabel[1], "selector must be app.kubernetes.io/name: loupe");
  check(svc.where, (s.ports ?? []).some((p) => p.name === "metrics" && p.port === metricsPort),
        `must expose port metrics ${metricsPort}`);
}

// Prometheus Operator: both monitors scrape port metrics at /metrics every 15s.
for (const [kind, listKey] of [["PodMonitor", "podMetricsEndpoints"], ["ServiceMonitor", "endpoints"]]) {
  const m = byName(kind, "loupe");
  if (!check(top, m, `no ${kind} loupe`)) continue;
  check(m.where, m.obj.spec.selector?.matchLabels?.[appLabel[0]] === appLabel[1], "selector must match app.kubernetes.io/name: loupe");
  const eps = m.obj.spec[listKey] ?? [];
  check(m.where, eps.length === 1 && eps[0].port === "metrics" && eps[0].path === "/metrics" && eps[0].interval === "15s",
        `${listKey} must be one endpoint {port: metrics, path: /metrics, interval: 15s}`);
}

console.log(`deploy manifests: ${validated} objects valid, ${failures} problems`);
process.exit(failures === 0 ? 0 : 1);
