#!/usr/bin/env node
// Long-lived driver that runs the REAL Alibaba Cloud Node SDKs against a local
// vpnroute server for tests/sdk (one process per pytest session).
//
// Protocol: one JSON object per line on stdin:
//   {"id", "variant", "endpoint": "127.0.0.1:PORT", "ak", "sk", "action",
//    "params": {WireName: value, ...}, "generic": bool, "version": "2016-04-28",
//    "product": "vpc" (default) | "ram" | "sts", "token": STS SecurityToken or null}
// and one JSON line per request on stdout:
//   {"id", "ok": true,  "body": {...}, "status": <http status or null>}
//   {"id", "ok": false, "kind": "api", "code", "message", "status", "request_id", "data", "name",
//    "access_denied_detail"}
//   {"id", "ok": false, "kind": "client", "name", "message", "stack"}   (SDK/transport failure, not an API error)
//   {"id", "ok": false, "kind": "harness", "message"}                   (bad test input: unknown action/param)
// Requests are processed one at a time, in order.
//
// Variants:
//   node-tea-v3  @alicloud/vpc20160428 client, default signature (ACS3-HMAC-SHA256)
//   node-tea-v2  same with config.signatureAlgorithm = 'v2' (HMAC-SHA1 v1)
//   pop-get      @alicloud/pop-core RPCClient, method GET (its default)
//   pop-post     @alicloud/pop-core RPCClient, method POST (form body)
'use strict';

const path = require('path');
const readline = require('readline');

const Vpc = require('@alicloud/vpc20160428');
// The Tea clients by product (VPC, RAM, STS): module and its "<action>WithOptions" index.
const PRODUCTS = {
  vpc: Vpc,
  ram: require('@alicloud/ram20150501'),
  sts: require('@alicloud/sts20150401'),
};
const OpenApi = require('@alicloud/openapi-core');
const { $OpenApiUtil, OpenApiUtil } = OpenApi;
const { RuntimeOptions } = require('@darabonba/typescript');
const RPCClient = require('@alicloud/pop-core').RPCClient;

// pop-core parses bodies with json-bigint: numbers with more than 15 digits become
// BigNumber objects. Serialise them back as JSON numbers (not strings) so the Python
// side sees the JSON type the server really sent.
let JSONbig = null;
try {
  const popDir = path.dirname(require.resolve('@alicloud/pop-core/package.json'));
  JSONbig = require(require.resolve('json-bigint', { paths: [popDir] }));
} catch (e) {
  JSONbig = null;
}

function stringify(obj) {
  if (JSONbig) {
    return JSONbig.stringify(obj);
  }
  return JSON.stringify(obj);
}

class HarnessError extends Error {}

function lowerFirst(s) {
  return s.slice(0, 1).toLowerCase() + s.slice(1);
}

// Index of "<action>WithOptions" methods by lower-cased name (robust against
// odd camel-casing like DescribeVSwitches -> describeVSwitchesWithOptions).
function methodIndex(ClientClass) {
  const idx = {};
  let proto = ClientClass.prototype;
  for (const name of Object.getOwnPropertyNames(proto)) {
    if (name.endsWith('WithOptions') && typeof proto[name] === 'function') {
      idx[name.toLowerCase()] = name;
    }
  }
  return idx;
}
const withOptionsIndex = {};
for (const [product, mod] of Object.entries(PRODUCTS)) {
  withOptionsIndex[product] = methodIndex(mod.default);
}

function isModelClass(t) {
  return typeof t === 'function' && typeof t.names === 'function' && typeof t.types === 'function';
}

// Build the constructor map (camelCase field names) of a Darabonba model from a
// wire-named map, recursing into nested models. Unknown wire names are an error:
// the typed client would silently drop them.
function fromWire(cls, wire, where) {
  const names = cls.names();
  const types = cls.types();
  const byWire = {};
  for (const k of Object.keys(names)) {
    byWire[names[k]] = k;
  }
  const out = {};
  for (const wk of Object.keys(wire)) {
    const k = byWire[wk];
    if (k === undefined) {
      throw new HarnessError(`${where}: parameter ${wk} is not a field of ${cls.name} (fields: ${Object.values(names).join(', ')})`);
    }
    out[k] = convertValue(types[k], wire[wk], `${where}.${wk}`);
  }
  return out;
}

function convertValue(type, value, where) {
  if (value === null || value === undefined) {
    return value;
  }
  if (isModelClass(type)) {
    return new type(fromWire(type, value, where));
  }
  if (type && typeof type === 'object' && type.type === 'array') {
    if (!Array.isArray(value)) {
      throw new HarnessError(`${where}: expected an array`);
    }
    return value.map((v, i) => convertValue(type.itemType, v, `${where}[${i}]`));
  }
  return value;
}

const teaClients = new Map();
const popClients = new Map();

function teaClient(variant, endpoint, ak, sk, product, token) {
  const key = [variant, endpoint, ak, sk, product, token || ''].join('\u0000');
  let c = teaClients.get(key);
  if (!c) {
    const cfg = new $OpenApiUtil.Config({
      accessKeyId: ak,
      accessKeySecret: sk,
      regionId: 'cn-hangzhou',
      endpoint: endpoint,
      protocol: 'http',
      readTimeout: 30000,
      connectTimeout: 10000,
    });
    if (token) {
      cfg.securityToken = token;
    }
    if (variant === 'node-tea-v2') {
      cfg.signatureAlgorithm = 'v2';
    }
    c = new PRODUCTS[product].default(cfg);
    teaClients.set(key, c);
  }
  return c;
}

function popClient(endpoint, ak, sk, version) {
  const key = [endpoint, ak, sk, version].join('\u0000');
  let c = popClients.get(key);
  if (!c) {
    // verbose=true makes request() resolve to [body, entry] so we can report the
    // HTTP status of successful calls too.
    c = new RPCClient({
      accessKeyId: ak,
      accessKeySecret: sk,
      endpoint: 'http://' + endpoint,
      apiVersion: version || '2016-04-28',
      opts: { timeout: 30000 },
    }, true);
    popClients.set(key, c);
  }
  return c;
}

async function callTea(req) {
  const product = req.product || 'vpc';
  if (!PRODUCTS[product]) {
    throw new HarnessError(`unknown product ${product}`);
  }
  const client = teaClient(req.variant, req.endpoint, req.ak, req.sk, product, req.token);
  const params = req.params || {};
  const runtime = new RuntimeOptions({});
  if (req.generic || req.version) {
    const oreq = new $OpenApiUtil.OpenApiRequest({ query: OpenApiUtil.query(params) });
    const p = new $OpenApiUtil.Params({
      action: req.action,
      version: req.version || '2016-04-28',
      protocol: 'HTTP',
      pathname: '/',
      method: 'POST',
      authType: 'AK',
      style: 'RPC',
      reqBodyType: 'formData',
      bodyType: 'json',
    });
    const resp = await client.callApi(p, oreq, runtime);
    return { body: resp.body, status: resp.statusCode };
  }
  const mod = PRODUCTS[product];
  const reqClass = mod[req.action + 'Request'];
  const method = withOptionsIndex[product][(req.action + 'WithOptions').toLowerCase()];
  if (!method) {
    throw new HarnessError(`no ${lowerFirst(req.action)}WithOptions in the ${product} SDK`);
  }
  let resp;
  if (reqClass) {
    const model = new reqClass(fromWire(reqClass, params, req.action + 'Request'));
    resp = await client[method](model, runtime);
  } else {
    // Actions without parameters (STS GetCallerIdentity) take only the runtime options.
    resp = await client[method](runtime);
  }
  // The SDK has already cast the JSON body to the typed model (and would have thrown
  // on a type mismatch); toMap() gives it back with wire field names.
  return { body: resp.body ? resp.body.toMap() : null, status: resp.statusCode };
}

async function callPop(req) {
  const client = popClient(req.endpoint, req.ak, req.sk, req.version);
  const method = req.variant === 'pop-post' ? 'POST' : 'GET';
  const [body, entry] = await client.request(req.action, req.params || {}, { method, timeout: 30000 });
  return { body, status: entry && entry.response ? entry.response.statusCode : null };
}

function apiErrorFromTea(e) {
  const data = e.data && typeof e.data === 'object' ? e.data : null;
  return {
    ok: false,
    kind: 'api',
    name: e.name,
    code: e.code,
    message: e.message,
    status: e.statusCode !== undefined ? e.statusCode : null,
    request_id: e.requestId !== undefined ? e.requestId : (data ? (data.RequestId || null) : null),
    data,
    access_denied_detail: e.accessDeniedDetail !== undefined ? e.accessDeniedDetail : null,
  };
}

function apiErrorFromPop(e) {
  const status = e.entry && e.entry.response ? e.entry.response.statusCode : null;
  return {
    ok: false,
    kind: 'api',
    name: e.name,
    code: e.code,
    message: e.message,
    status,
    request_id: e.data ? (e.data.RequestId || null) : null,
    data: e.data || null,
  };
}

// Type tree of an SDK model, keyed by wire names, for JSON-type assertions on raw
// bodies: leaf = "string" | "number" | "boolean" | "map" | "any" | ...,
// {"model": Name, "fields": {...}}, {"array": <type>}.
function schemaOf(t, depth) {
  if (depth > 20) {
    return 'any';
  }
  if (isModelClass(t)) {
    const names = t.names();
    const types = t.types();
    const fields = {};
    for (const k of Object.keys(names)) {
      fields[names[k]] = schemaOf(types[k], depth + 1);
    }
    return { model: t.name, fields };
  }
  if (t && typeof t === 'object' && t.type === 'array') {
    return { array: schemaOf(t.itemType, depth + 1) };
  }
  if (t && typeof t === 'object' && t.type === 'map') {
    return 'map';
  }
  if (typeof t === 'string') {
    return t;
  }
  return 'any';
}

async function handle(req) {
  if (req.op === 'schema') {
    const cls = Vpc[req.model];
    if (!isModelClass(cls)) {
      return { ok: false, kind: 'harness', message: `no model ${req.model} in @alicloud/vpc20160428` };
    }
    return { ok: true, body: schemaOf(cls, 0) };
  }
  const isTea = req.variant === 'node-tea-v3' || req.variant === 'node-tea-v2';
  const isPop = req.variant === 'pop-get' || req.variant === 'pop-post';
  if (!isTea && !isPop) {
    return { ok: false, kind: 'harness', message: `unknown variant ${req.variant}` };
  }
  try {
    const r = isTea ? await callTea(req) : await callPop(req);
    return { ok: true, body: r.body, status: r.status };
  } catch (e) {
    if (e instanceof HarnessError) {
      return { ok: false, kind: 'harness', message: e.message };
    }
    if (isTea && e instanceof OpenApi.AlibabaCloudError) {
      return apiErrorFromTea(e);
    }
    if (isPop && e && e.code && e.data && typeof e.data === 'object' && e.entry) {
      return apiErrorFromPop(e);
    }
    return {
      ok: false,
      kind: 'client',
      name: e && e.name ? e.name : typeof e,
      code: e && e.code !== undefined ? String(e.code) : null,
      message: e && e.message ? e.message : String(e),
      stack: e && e.stack ? String(e.stack) : null,
    };
  }
}

function main() {
  const rl = readline.createInterface({ input: process.stdin, terminal: false });
  let chain = Promise.resolve();
  rl.on('line', (line) => {
    if (!line.trim()) {
      return;
    }
    chain = chain.then(async () => {
      let req;
      try {
        req = JSON.parse(line);
      } catch (e) {
        process.stdout.write(stringify({ id: null, ok: false, kind: 'harness', message: 'bad JSON line: ' + e.message }) + '\n');
        return;
      }
      const res = await handle(req);
      res.id = req.id;
      let out;
      try {
        out = stringify(res);
      } catch (e) {
        out = JSON.stringify({ id: req.id, ok: false, kind: 'harness', message: 'cannot serialise result: ' + e.message });
      }
      process.stdout.write(out + '\n');
    });
  });
  rl.on('close', () => {
    chain.then(() => process.exit(0));
  });
  process.stdout.write(stringify({ id: 'ready', ok: true, versions: {
    node: process.versions.node,
    vpc: require('@alicloud/vpc20160428/package.json').version,
    ram: require('@alicloud/ram20150501/package.json').version,
    sts: require('@alicloud/sts20150401/package.json').version,
    openapiCore: require('@alicloud/openapi-core/package.json').version,
    popCore: require('@alicloud/pop-core/package.json').version,
  } }) + '\n');
}

main();
