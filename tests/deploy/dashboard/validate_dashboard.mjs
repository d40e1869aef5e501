#!/usr/bin/env node
// Validates deploy/grafana/loupe-dashboard.json against Grafana's own dashboard schema and checks
// what a schema cannot: every query is valid PromQL, every per-service query carries the dashboard's
// service and namespace filters, the template variables are the ones users rely on.
//
//   node validate_dashboard.mjs [DASHBOARD]                  validate (exit 1 on any problem)
//   node validate_dashboard.mjs --list-metrics [DASHBOARD]   the metric families the queries use,
//                                                            one per line (nothing else printed)
//   node validate_dashboard.mjs --list-selectors [DASHBOARD] JSON: every metric name as queried,
//                                                            with its family and scope
//   node validate_dashboard.mjs --list-queries [DASHBOARD]   JSON: every panel query (panel, refId,
//                                                            expr) and variable query (variable, query)
//
// Run `npm ci` in this folder first (package-lock.json pins every package).
//
// How the schema check works, and why: @grafana/schema (the package Grafana publishes from the CUE
// kinds its backend validates dashboards with) ships TypeScript types, defaults and enums, but no
// runtime JSON Schema and no type guards. So this script derives JSON Schemas from those published
// types at run time with ts-json-schema-generator and checks the dashboard with Ajv:
//   - the dashboard against `Dashboard` of dist/types/raw/dashboard/x/types.gen.d.ts (the code
//     generated from the dashboard kind; the "veneer" types in dist/types/veneer only loosen it);
//   - each panel's `options` and `fieldConfig.defaults.custom` against `Options` and `FieldConfig`
//     of that panel type's generated panelcfg (dist/types/raw/composable/<type>/panelcfg/x).
// Interfaces become closed objects (additionalProperties: false), so a misspelt key fails. The
// schemaVersion must equal the one of @grafana/schema's defaultDashboard (the version this
// dashboard targets); package-lock.json pins the package, so the check is reproducible.
// PromQL is parsed with @prometheus-io/lezer-promql, the grammar of Prometheus's own web UI.

import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

import Ajv from 'ajv';
import { createGenerator } from 'ts-json-schema-generator';
import { parser as promqlParser } from '@prometheus-io/lezer-promql';
import { defaultDashboard } from '@grafana/schema';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const schemaRoot = path.join(path.dirname(require.resolve('@grafana/schema/package.json')), 'dist/types/raw');

// The variables every per-service query must be filtered by. Outside Kubernetes the namespace label
// is absent; the variables' All value is the regex ".*", which matches an absent label too.
const FILTERS = { service_name: '$service_name', k8s_namespace_name: '$k8s_namespace_name' };

// Metrics without a service_name label: node-wide figures and the agent's own health. Every other
// metric of loupe carries service_name (README, "loupe agent"), so its queries must be filtered.
const GLOBAL_METRICS = new Set([
  'loupe_events_total', 'loupe_events_dropped_total', 'loupe_http_exchanges_total',
  'loupe_http_unparsed_segments_total', 'loupe_http_unmatched_responses_total',
  'loupe_http_route_overflow_total', 'loupe_http_desyncs_total',
  'loupe_redis_exchanges_total', 'loupe_redis_unparsed_segments_total',
  'loupe_redis_unmatched_responses_total', 'loupe_redis_desyncs_total',
  'loupe_redis_operation_overflow_total', 'loupe_redis_pushes_total',
  'loupe_postgresql_unparsed_segments_total', 'loupe_postgresql_unmatched_responses_total',
  'loupe_postgresql_desyncs_total', 'loupe_postgresql_tls_connections_total',
  'loupe_postgresql_ssl_refused_total', 'loupe_postgresql_cancel_requests_total',
  'loupe_mysql_unparsed_segments_total', 'loupe_mysql_unmatched_responses_total',
  'loupe_mysql_desyncs_total', 'loupe_mysql_tls_connections_total',
  'loupe_db_query_overflow_total',
  'loupe_connections_tracked', 'loupe_series',
  'loupe_uptime_seconds', 'loupe_resident_memory_bytes', 'loupe_build_info', 'loupe_bpf_map_entries',
  'loupe_alerts_pending', 'loupe_alert_rules', 'loupe_alert_notifications_total',
]);
// Prometheus's own series (alerting rules' state), not exported by loupe.
const PROMETHEUS_METRICS = new Set(['ALERTS', 'ALERTS_FOR_STATE']);

function scopeOf(name) {
  if (PROMETHEUS_METRICS.has(name)) return 'prometheus';
  if (/^(system_|loupe_system_)/.test(name) || GLOBAL_METRICS.has(name)) return 'global';
  return 'service';
}

// A histogram's or summary's samples are <family>_bucket, _count and _sum; the family (the name in
// `# TYPE`) is what an exposition is checked for. No loupe family itself ends in these suffixes;
// the e2e test checks against a real /metrics that each stripped name is a histogram or summary.
function familyOf(name) {
  return name.replace(/_(bucket|count|sum)$/, '');
}

// ------------------------------------------------------------------------------------------------

function generateSchema(file, type) {
  return createGenerator({
    path: file, type, skipTypeCheck: true, expose: 'export', topRef: true, jsDoc: 'none',
    additionalProperties: false,
  }).createSchema(type);
}

const problems = [];
const problem = (where, message) => problems.push(`${where}: ${message}`);

function ajvErrors(validate) {
  return (validate.errors || []).map((e) => `${e.instancePath || '/'} ${e.message}` +
    (e.params && e.params.additionalProperty ? ` ('${e.params.additionalProperty}')` : '') +
    (e.params && e.params.allowedValues ? ` (${JSON.stringify(e.params.allowedValues)})` : ''));
}

// Grafana replaces its variables before the query reaches Prometheus. Interval variables become
// durations; $service_name and $k8s_namespace_name only appear inside label matcher strings.
function substituteGrafanaVariables(expr) {
  return expr
    .replace(/\$__(rate_interval|interval|range)\b/g, '5m')
    .replace(/\$\{__(rate_interval|interval|range)\}/g, '5m');
}

// Parses a PromQL expression; returns [{name, matchers: [{label, op, value}]}] of its selectors, or
// null after recording a problem.
function promqlSelectors(where, expr) {
  const text = substituteGrafanaVariables(expr);
  const tree = promqlParser.parse(text);
  const selectors = [];
  let error = null;
  tree.iterate({
    enter(node) {
      if (node.type.isError && error === null) error = node.from;
      if (node.name !== 'VectorSelector') return;
      let name = null;
      const matchers = [];
      const cursor = node.node.cursor();
      cursor.firstChild();
      do {
        if (cursor.name === 'Identifier') name = text.slice(cursor.from, cursor.to);
        if (cursor.name === 'LabelMatchers') {
          const m = cursor.node.cursor();
          if (m.firstChild()) {
            do {
              if (m.name !== 'UnquotedLabelMatcher' && m.name !== 'QuotedLabelMatcher') continue;
              const label = m.node.getChild('LabelName') || m.node.getChild('QuotedLabelName');
              const op = m.node.getChild('MatchOp');
              const value = m.node.getChild('StringLiteral');
              matchers.push({
                label: text.slice(label.from, label.to).replace(/^"|"$/g, ''),
                op: text.slice(op.from, op.to),
                value: value ? JSON.parse(text.slice(value.from, value.to).replace(/^'|'$/g, '"')) : '',
              });
            } while (m.nextSibling());
          }
        }
      } while (cursor.nextSibling());
      if (name === null) {
        const byName = matchers.find((m) => m.label === '__name__' && m.op === '=');
        name = byName ? byName.value : null;
      }
      selectors.push({ name, matchers });
    },
  });
  if (error !== null) {
    problem(where, `invalid PromQL near offset ${error}: ${JSON.stringify(expr)}`);
    return null;
  }
  if (selectors.length === 0) problem(where, `query selects no metric: ${JSON.stringify(expr)}`);
  return selectors;
}

// Every selector: a named metric; per-service metrics filtered by both variables (ALERTS, whose
// rules aggregate the namespace away, by the service only); global metrics by neither.
function checkSelectors(where, selectors, { filtered }) {
  for (const s of selectors) {
    if (!s.name) {
      problem(where, 'a selector without a metric name');
      continue;
    }
    const scope = scopeOf(s.name);
    const has = (label) => s.matchers.some((m) => m.label === label && m.op === '=~' && m.value === FILTERS[label]);
    const mentions = (label) => s.matchers.some((m) => m.label === label);
    const wanted = !filtered ? [] : scope === 'service' ? Object.keys(FILTERS)
      : scope === 'prometheus' ? ['service_name'] : [];
    for (const label of wanted)
      if (!has(label)) problem(where, `${s.name} is not filtered by ${label}=~"${FILTERS[label]}"`);
    if (scope === 'global')
      for (const label of Object.keys(FILTERS))
        if (mentions(label)) problem(where, `${s.name} has no ${label} label: filtering it would empty the panel`);
  }
}

// ------------------------------------------------------------------------------------------------

function checkVariables(dashboard, used) {
  const list = (dashboard.templating && dashboard.templating.list) || [];
  const byName = new Map(list.map((v) => [v.name, v]));
  const ds = byName.get('datasource');
  if (!ds || ds.type !== 'datasource' || ds.query !== 'prometheus')
    problem('templating', "needs a variable 'datasource' of type datasource, query 'prometheus'");
  for (const name of Object.keys(FILTERS)) {
    const v = byName.get(name);
    const where = `templating ${name}`;
    if (!v) {
      problem('templating', `needs a variable '${name}'`);
      continue;
    }
    if (v.type !== 'query') problem(where, 'must be a query variable');
    if (!v.datasource || v.datasource.uid !== '${datasource}') problem(where, 'must query the ${datasource} data source');
    if (v.includeAll !== true || v.allValue !== '.*')
      problem(where, 'needs includeAll with allValue ".*" (matches an absent label outside Kubernetes)');
    const query = typeof v.query === 'string' ? v.query : v.query && v.query.query;
    const m = /^\s*label_values\(\s*(.*)\s*,\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$/s.exec(query || '');
    if (!m || m[2] !== name) {
      problem(where, `query must be label_values(<selector>, ${name}): ${JSON.stringify(query)}`);
      continue;
    }
    const selectors = promqlSelectors(where, m[1]);
    if (selectors) {
      checkSelectors(where, selectors, { filtered: false });
      for (const s of selectors) if (s.name) used.set(s.name, scopeOf(s.name));
    }
  }
}

function flattenPanels(dashboard) {
  const out = [];
  for (const p of dashboard.panels || []) {
    out.push(p);
    if (p.type === 'row') for (const inner of p.panels || []) out.push(inner);
  }
  return out;
}

function checkLayout(panels) {
  const ids = new Set();
  const boxes = [];
  for (const p of panels) {
    const where = `panel ${p.id} "${p.title}"`;
    if (ids.has(p.id)) problem(where, 'duplicate panel id');
    ids.add(p.id);
    const g = p.gridPos;
    if (!g) {
      problem(where, 'no gridPos');
      continue;
    }
    if (g.x < 0 || g.w <= 0 || g.h <= 0 || g.x + g.w > 24) problem(where, `gridPos out of the 24 columns: ${JSON.stringify(g)}`);
    for (const [other, o] of boxes)
      if (g.x < o.x + o.w && o.x < g.x + g.w && g.y < o.y + o.h && o.y < g.y + g.h)
        problem(where, `overlaps panel ${other}`);
    boxes.push([p.id, g]);
  }
}

function main() {
  const args = process.argv.slice(2);
  const mode = args.find((a) => a.startsWith('--')) || '--validate';
  if (!['--validate', '--list-metrics', '--list-selectors', '--list-queries'].includes(mode)) {
    console.error(`unknown option ${mode}`);
    process.exit(2);
  }
  const file = args.find((a) => !a.startsWith('--')) || path.join(here, '../../../deploy/grafana/loupe-dashboard.json');
  let dashboard;
  try {
    dashboard = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    console.error(`${file}: ${e.message}`);
    process.exit(1);
  }
  const listing = mode !== '--validate';

  // 1. Grafana's schema: the dashboard model, then each panel type's options and custom field config.
  if (!listing) {
    const ajv = new Ajv({ allErrors: true, strict: false });
    const validate = ajv.compile(generateSchema(path.join(schemaRoot, 'dashboard/x/types.gen.d.ts'), 'Dashboard'));
    if (!validate(dashboard)) for (const e of ajvErrors(validate)) problem('dashboard schema', e);
    if (dashboard.schemaVersion !== defaultDashboard.schemaVersion)
      problem('dashboard', `schemaVersion ${dashboard.schemaVersion}, @grafana/schema expects ${defaultDashboard.schemaVersion}`);
    const panelSchemas = new Map();
    for (const p of flattenPanels(dashboard)) {
      if (p.type === 'row') continue;
      const where = `panel ${p.id} "${p.title}" (${p.type})`;
      const cfg = path.join(schemaRoot, 'composable', String(p.type), 'panelcfg/x/types.gen.d.ts');
      if (!fs.existsSync(cfg)) {
        problem(where, 'not a panel type @grafana/schema describes');
        continue;
      }
      if (!panelSchemas.has(p.type)) {
        const source = fs.readFileSync(cfg, 'utf8');
        const options = ajv.compile(generateSchema(cfg, 'Options'));
        const custom = /export interface FieldConfig\b/.test(source) ? ajv.compile(generateSchema(cfg, 'FieldConfig')) : null;
        panelSchemas.set(p.type, { options, custom });
      }
      const { options, custom } = panelSchemas.get(p.type);
      if (!options(p.options || {})) for (const e of ajvErrors(options)) problem(`${where} options`, e);
      const c = p.fieldConfig && p.fieldConfig.defaults && p.fieldConfig.defaults.custom;
      if (c !== undefined && custom && !custom(c)) for (const e of ajvErrors(custom)) problem(`${where} fieldConfig.defaults.custom`, e);
    }
  }

  // 2. Queries, variables, layout.
  const used = new Map(); // metric name as queried -> scope
  const queries = [];
  for (const v of (dashboard.templating && dashboard.templating.list) || [])
    if (v.type === 'query') queries.push({ variable: v.name, query: typeof v.query === 'string' ? v.query : v.query && v.query.query });
  checkVariables(dashboard, used);
  const panels = flattenPanels(dashboard);
  checkLayout(panels);
  for (const p of panels) {
    if (p.type === 'row') {
      if (!p.collapsed && (p.panels || []).length) problem(`row "${p.title}"`, 'an open row must not hold panels');
      continue;
    }
    const where = `panel ${p.id} "${p.title}"`;
    if (!p.datasource || p.datasource.uid !== '${datasource}' || p.datasource.type !== 'prometheus')
      problem(where, 'datasource must be {type: prometheus, uid: ${datasource}}');
    const targets = p.targets || [];
    if (!targets.length) problem(where, 'no query');
    const refIds = new Set();
    for (const t of targets) {
      const at = `${where} query ${t.refId}`;
      if (!t.refId || refIds.has(t.refId)) problem(at, 'missing or duplicate refId');
      refIds.add(t.refId);
      if (!t.datasource || t.datasource.uid !== '${datasource}') problem(at, 'datasource must be ${datasource}');
      if (typeof t.expr !== 'string' || !t.expr.trim()) {
        problem(at, 'no PromQL expr');
        continue;
      }
      queries.push({ panel: p.title, refId: t.refId, expr: t.expr });
      const selectors = promqlSelectors(at, t.expr);
      if (!selectors) continue;
      checkSelectors(at, selectors, { filtered: true });
      for (const s of selectors) if (s.name) used.set(s.name, scopeOf(s.name));
    }
  }

  if (mode === '--list-metrics') {
    const families = [...new Set([...used.keys()].filter((n) => scopeOf(n) !== 'prometheus').map(familyOf))].sort();
    process.stdout.write(families.map((f) => f + '\n').join(''));
  } else if (mode === '--list-selectors') {
    const rows = [...used.entries()].sort().map(([name, scope]) => ({ name, family: familyOf(name), scope }));
    process.stdout.write(JSON.stringify(rows, null, 1) + '\n');
  } else if (mode === '--list-queries') {
    process.stdout.write(JSON.stringify(queries, null, 1) + '\n');
  }
  if (problems.length) {
    for (const p of problems) console.error('  ' + p);
    console.error(`dashboard: ${problems.length} problem(s) in ${file}`);
    process.exit(1);
  }
  if (!listing) {
    console.log(`dashboard ok: ${path.relative(process.cwd(), file) || file}: schemaVersion ${dashboard.schemaVersion} ` +
      `(@grafana/schema ${require('@grafana/schema/package.json').version}), ${panels.length} panels, ` +
      `${queries.filter((q) => q.expr).length} PromQL queries, ${[...used.keys()].length} metric names`);
  }
}

main();
