#!/usr/bin/env node
// kafkajs (a pure JavaScript client) against Strata.
//
// Scenarios:
//   produce_group  keyed records with headers; the keys' partitions agree with the HTTP
//                  API's (both murmur2); a consumer group of two members consumes every
//                  record, and its committed offsets (read over HTTP) reach the end
//   cross_door     records produced here read back over HTTP (and, by the Rust test,
//                  gRPC); records produced over HTTP consumed here, byte for byte
//
// Usage: node kafkajs_test.js --bootstrap HOST:PORT --http http://HOST:PORT [scenario ...]
//        (or STRATA_KAFKA_BOOTSTRAP / STRATA_HTTP_URL)
'use strict';

const crypto = require('crypto');
const { Kafka, logLevel, Partitioners } = require('kafkajs');

const TENANT = 'default';
const RESULT_PREFIX = 'STRATA-RESULT ';
const SCENARIO_TIMEOUT_MS = 120000;

class Mismatch extends Error {}

function check(cond, message) {
  if (!cond) throw new Mismatch(message);
}

function show(v) {
  return JSON.stringify(v, (k, x) => (x && x.type === 'Buffer' ? `<${x.data.length} bytes>` : x));
}

function checkEq(actual, expected, what) {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new Mismatch(`${what}: expected ${show(expected)}, got ${show(actual)}`);
}

function unique(prefix) {
  return `${prefix}-${crypto.randomBytes(6).toString('hex')}`;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitUntil(pred, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await pred()) return;
    if (Date.now() >= deadline) {
      throw new Mismatch(`timed out after ${timeoutMs / 1000}s waiting for ${typeof what === 'function' ? what() : what}`);
    }
    await sleep(100);
  }
}

const b64 = (buf) => (buf === null || buf === undefined ? null : Buffer.from(buf).toString('base64'));
const unb64 = (s) => (s === null || s === undefined ? null : Buffer.from(s, 'base64'));

// --- Strata's HTTP API ---------------------------------------------------------

class Http {
  constructor(base) {
    this.base = base.replace(/\/$/, '');
  }

  async request(method, path, body, ok = [200, 201, 204]) {
    const resp = await fetch(this.base + path, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(15000),
    });
    const text = await resp.text();
    if (!ok.includes(resp.status)) {
      throw new Mismatch(`HTTP ${method} ${path}: status ${resp.status}, body ${text.slice(0, 500)}`);
    }
    return { status: resp.status, body: text ? JSON.parse(text) : null };
  }

  topicPath(topic) {
    return `/v1/tenants/${TENANT}/topics/${encodeURIComponent(topic)}`;
  }

  async createTopic(name, partitions) {
    return (await this.request('POST', `/v1/tenants/${TENANT}/topics`, { name, partitions }, [201])).body;
  }

  // Records: {key, value (Buffer|null), headers [[k, Buffer]], timestamp_ms, partition}.
  async produce(topic, records) {
    const body = {
      encoding: 'base64',
      records: records.map((r) => {
        const out = {
          key: b64(r.key),
          value: b64(r.value),
          headers: (r.headers || []).map(([k, v]) => ({ key: k, value: b64(v) })),
        };
        if (r.timestamp_ms !== undefined) out.timestamp_ms = r.timestamp_ms;
        if (r.partition !== undefined) out.partition = r.partition;
        return out;
      }),
    };
    return (await this.request('POST', `${this.topicPath(topic)}/records`, body)).body.offsets;
  }

  async readAll(topic, partition) {
    const out = [];
    let offset = 0;
    for (let i = 0; i < 10000; i++) {
      const q = `offset=${offset}&max_records=1000&encoding=base64`;
      const { body } = await this.request('GET', `${this.topicPath(topic)}/partitions/${partition}/records?${q}`);
      for (const r of body.records) {
        out.push({
          topic,
          partition,
          offset: r.offset,
          key: unb64(r.key),
          value: unb64(r.value),
          headers: r.headers.map((h) => [h.key, unb64(h.value)]),
          timestamp_ms: r.timestamp_ms,
        });
      }
      offset = body.next_offset;
      if (offset >= body.high_watermark || body.records.length === 0) return out;
    }
    throw new Mismatch(`HTTP read of ${topic}/${partition} did not reach the end`);
  }

  async endOffset(topic, partition) {
    return (await this.request('GET', `${this.topicPath(topic)}/partitions/${partition}`)).body.end_offset;
  }

  async groupOffsets(group) {
    const { status, body } = await this.request('GET', `/v1/tenants/${TENANT}/groups/${encodeURIComponent(group)}/offsets`, undefined, [200, 404]);
    if (status === 404) return {};
    const out = {};
    for (const o of body.offsets) out[`${o.topic}/${o.partition}`] = o.offset;
    return out;
  }
}

// --- records ---------------------------------------------------------------------

// The same kinds of records the Python programs use (strata_common.sample_records).
function sampleRecords(tag, tsBase = Date.now() - 60000) {
  const t = Buffer.from(tag);
  const all = Buffer.from([...Array(256).keys()]);
  return [
    { key: Buffer.concat([Buffer.from('key-'), t]), value: Buffer.concat([Buffer.from('plain text value '), t]), headers: [['source', t], ['kind', Buffer.from('text')]], timestamp_ms: tsBase },
    { key: Buffer.concat([Buffer.from([0, 255, 254]), t]), value: Buffer.concat([all, t]), headers: [['bin', Buffer.from([0, 1, 255, 128])], ['dup', Buffer.from('1')], ['dup', Buffer.from('2')]], timestamp_ms: tsBase + 1 },
    { key: Buffer.concat([Buffer.from('empty-'), t]), value: Buffer.alloc(0), headers: [], timestamp_ms: tsBase + 2 },
    { key: Buffer.concat([Buffer.from('tombstone-'), t]), value: null, headers: [['x', Buffer.alloc(0)]], timestamp_ms: tsBase + 3 },
    { key: null, value: Buffer.concat([Buffer.from('no key '), t, Buffer.from([0xc3, 0x28])]), headers: [], timestamp_ms: tsBase + 4 },
    { key: Buffer.from('k'), value: crypto.randomBytes(3000), headers: [['unicode-\u00e9', Buffer.from('\u2603')]], timestamp_ms: tsBase + 5 },
  ];
}

// kafkajs gives headers as an object (a repeated key: an array of values).
function headersToObject(list) {
  const out = {};
  for (const [k, v] of list) {
    if (k in out) out[k] = [].concat(out[k], [v]);
    else out[k] = v;
  }
  return out;
}

function kafkajsHeaders(obj) {
  const out = {};
  for (const [k, v] of Object.entries(obj || {})) out[k] = Array.isArray(v) ? v.map((x) => Buffer.from(x)) : Buffer.from(v);
  return out;
}

const hex = (b) => (b === null || b === undefined ? null : Buffer.from(b).toString('hex'));

function sameHeaders(a, b) {
  const norm = (o) => Object.entries(o).map(([k, v]) => [k, Array.isArray(v) ? v.map(hex) : hex(v)]);
  return JSON.stringify(norm(a)) === JSON.stringify(norm(b));
}

function describe(r) {
  const short = (b) => (b === null || b === undefined ? null : b.length > 24 ? `${hex(b.subarray(0, 24))}...(${b.length} bytes)` : hex(b));
  return `offset=${r.offset} key=${short(r.key)} value=${short(r.value)} headers=${show(r.headers)} ts=${r.timestamp_ms}`;
}

// Both lists: {offset, key, value, headers (list), timestamp_ms}.
function compareRecords(expected, actual, who) {
  if (expected.length !== actual.length) {
    throw new Mismatch(`${who}: expected ${expected.length} records, got ${actual.length}: ${actual.slice(0, 10).map(describe).join('; ')}`);
  }
  expected.forEach((e, i) => {
    const a = actual[i];
    const diffs = [];
    if (hex(e.key) !== hex(a.key)) diffs.push('key');
    if (hex(e.value) !== hex(a.value)) diffs.push('value');
    if (!sameHeaders(headersToObject(e.headers), headersToObject(a.headers))) diffs.push('headers');
    if (Number(e.timestamp_ms) !== Number(a.timestamp_ms)) diffs.push('timestamp_ms');
    if (Number(e.offset) !== Number(a.offset)) diffs.push('offset');
    if (diffs.length) throw new Mismatch(`${who}: record ${i} differs in ${diffs.join(', ')}:\n  expected ${describe(e)}\n  got      ${describe(a)}`);
  });
}

function fromKafkajs(topic, partition, message) {
  const headers = [];
  for (const [k, v] of Object.entries(kafkajsHeaders(message.headers))) {
    for (const x of Array.isArray(v) ? v : [v]) headers.push([k, x]);
  }
  return {
    topic,
    partition,
    offset: Number(message.offset),
    key: message.key,
    value: message.value,
    headers,
    timestamp_ms: Number(message.timestamp),
  };
}

// --- the client ---------------------------------------------------------------------

function client(ctx, id) {
  return new Kafka({
    clientId: id,
    brokers: [ctx.bootstrap],
    logLevel: process.env.KAFKAJS_LOG_LEVEL ? logLevel[process.env.KAFKAJS_LOG_LEVEL] : logLevel.ERROR,
    connectionTimeout: 5000,
    requestTimeout: 15000,
    retry: { retries: 3, initialRetryTime: 200, maxRetryTime: 2000 },
  });
}

function producerOf(kafka) {
  return kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner, allowAutoTopicCreation: false, idempotent: false });
}

// A group member collecting what it consumes; `assigned` tracks its partitions.
async function startMember(kafka, topic, group, sink) {
  const consumer = kafka.consumer({ groupId: group, sessionTimeout: 10000, heartbeatInterval: 1000, rebalanceTimeout: 20000, maxWaitTimeInMs: 500, allowAutoTopicCreation: false });
  const state = { consumer, assigned: [], errors: [] };
  consumer.on(consumer.events.GROUP_JOIN, (e) => {
    state.assigned = (e.payload.memberAssignment[topic] || []).slice().sort();
  });
  consumer.on(consumer.events.CRASH, (e) => state.errors.push(String(e.payload.error)));
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ partition, message }) => {
      sink.push(fromKafkajs(topic, partition, message));
    },
  });
  return state;
}

// --- scenarios ------------------------------------------------------------------------

async function produceGroup(ctx) {
  const topic = unique('kjs-group');
  const group = unique('kjs-group');
  await ctx.http.createTopic(topic, 4);
  const kafka = client(ctx, 'kafkajs-produce-group');
  const producer = producerOf(kafka);
  await producer.connect();
  const produced = [];
  try {
    for (let batch = 0; batch < 4; batch++) {
      const messages = [];
      for (let i = 0; i < 100; i++) {
        const n = batch * 100 + i;
        messages.push({ key: `user-${n % 29}`, value: `event ${n}`, headers: { n: String(n), src: 'kafkajs' } });
      }
      const res = await producer.send({ topic, acks: -1, messages });
      for (const r of res) check(r.errorCode === 0, `produce to partition ${r.partition} failed with error ${r.errorCode}`);
      produced.push(...messages);
    }
  } finally {
    await producer.disconnect();
  }

  // Every record is read back over HTTP; note where each key went.
  const placed = {};
  const stored = new Map();
  for (let p = 0; p < 4; p++) {
    for (const r of await ctx.http.readAll(topic, p)) {
      const key = r.key.toString();
      check(placed[key] === undefined || placed[key] === p, `key ${key} went to partitions ${placed[key]} and ${p}`);
      placed[key] = p;
      stored.set(r.value.toString(), r);
    }
  }
  checkEq(stored.size, produced.length, 'records stored (read over HTTP)');
  // Kafka's default partitioner (murmur2, kafkajs's DefaultPartitioner) and the HTTP API agree.
  const probe = unique('kjs-placement');
  await ctx.http.createTopic(probe, 4);
  const keys = Object.keys(placed).sort();
  const offsets = await ctx.http.produce(probe, keys.map((k) => ({ key: Buffer.from(k), value: Buffer.from('x') })));
  const httpPlaced = {};
  keys.forEach((k, i) => (httpPlaced[k] = offsets[i].partition));
  checkEq(httpPlaced, Object.fromEntries(keys.map((k) => [k, placed[k]])), 'partition of each key: HTTP vs kafkajs (murmur2)');

  // A group of two consumes everything.
  const consumed = [];
  const members = [];
  try {
    members.push(await startMember(client(ctx, 'kafkajs-member-a'), topic, group, consumed));
    members.push(await startMember(client(ctx, 'kafkajs-member-b'), topic, group, consumed));
    const values = () => new Set(consumed.map((r) => r.value.toString()));
    await waitUntil(() => produced.every((m) => values().has(m.value)), 60000, () => {
      const v = values();
      const missing = produced.filter((m) => !v.has(m.value));
      return `the group to consume every record: ${missing.length} of ${produced.length} missing; assignments ${show(members.map((m) => m.assigned))}; errors ${show(members.flatMap((m) => m.errors))}`;
    });
    await waitUntil(
      () => members.every((m) => m.assigned.length === 2),
      30000,
      () => `both members to own 2 of the 4 partitions; they own ${show(members.map((m) => m.assigned))}`
    );
  } finally {
    for (const m of members) await m.consumer.disconnect();
  }
  for (const r of consumed) {
    const s = stored.get(r.value.toString());
    check(s !== undefined, `consumed a record that was not produced: ${describe(r)}`);
    compareRecords([s], [r], `consumed record ${r.partition}/${r.offset}`);
  }
  // Committed on the way out: every partition's offset is its end.
  const committed = await ctx.http.groupOffsets(group);
  const want = {};
  for (let p = 0; p < 4; p++) want[`${topic}/${p}`] = await ctx.http.endOffset(topic, p);
  checkEq(committed, want, 'committed offsets of the group (over HTTP) vs the partitions\' ends');
}

async function crossDoor(ctx) {
  const topic = unique('kjs-xdoor');
  await ctx.http.createTopic(topic, 2);
  const kafka = client(ctx, 'kafkajs-cross-door');
  const producer = producerOf(kafka);
  await producer.connect();
  const records = sampleRecords('kafkajs');
  let res;
  try {
    res = await producer.send({
      topic,
      acks: -1,
      messages: records.map((r) => ({
        partition: 1,
        key: r.key,
        value: r.value,
        headers: headersToObject(r.headers),
        timestamp: String(r.timestamp_ms),
      })),
    });
  } finally {
    await producer.disconnect();
  }
  checkEq(res.map((r) => [r.partition, r.errorCode]), [[1, 0]], 'produce result');
  const base = Number(res[0].baseOffset);
  checkEq(base, 0, 'base offset of the first produce to an empty partition');
  records.forEach((r, i) => Object.assign(r, { topic, partition: 1, offset: base + i }));
  // kafkajs sends a repeated header key's values together, after the first; compare as kafkajs sent them.
  const sent = records.map((r) => ({ ...r, headers: Object.entries(headersToObject(r.headers)).flatMap(([k, v]) => (Array.isArray(v) ? v : [v]).map((x) => [k, x])) }));
  compareRecords(sent, await ctx.http.readAll(topic, 1), 'kafkajs-produced records over HTTP');
  console.log(
    RESULT_PREFIX +
      JSON.stringify({
        label: 'kafkajs',
        records: sent.map((r) => ({ topic, partition: 1, offset: r.offset, key: b64(r.key), value: b64(r.value), headers: r.headers.map(([k, v]) => [k, b64(v)]), timestamp_ms: r.timestamp_ms })),
      })
  );

  // The other way: produced over HTTP, consumed here.
  const fromHttp = sampleRecords('from-http').map((r) => ({ ...r, partition: 0 }));
  const offsets = await ctx.http.produce(topic, fromHttp);
  checkEq(offsets.map((o) => [o.partition, o.offset]), fromHttp.map((_, i) => [0, i]), 'HTTP produce offsets');
  const consumed = [];
  const member = await startMember(client(ctx, 'kafkajs-cross-door-consumer'), topic, unique('kjs-xdoor'), consumed);
  try {
    const p0 = () => consumed.filter((r) => r.partition === 0);
    await waitUntil(() => p0().length >= fromHttp.length, 60000, () => `the HTTP-produced records: got ${p0().length} of ${fromHttp.length}; errors ${show(member.errors)}`);
    await sleep(500);
    compareRecords(fromHttp.map((r, i) => ({ ...r, offset: i })), p0(), 'HTTP-produced records consumed by kafkajs');
  } finally {
    await member.consumer.disconnect();
  }
}

const SCENARIOS = { produce_group: produceGroup, cross_door: crossDoor };

// --- the runner -------------------------------------------------------------------------

function parseArgs(argv) {
  const opts = {
    bootstrap: process.env.STRATA_KAFKA_BOOTSTRAP || '127.0.0.1:9092',
    http: process.env.STRATA_HTTP_URL || 'http://127.0.0.1:7070',
    scenarios: [],
  };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--bootstrap') opts.bootstrap = argv[++i];
    else if (argv[i] === '--http') opts.http = argv[++i];
    else if (argv[i] === '-h' || argv[i] === '--help') {
      console.log(`usage: node kafkajs_test.js --bootstrap HOST:PORT --http URL [${Object.keys(SCENARIOS).join('|')} ...]`);
      process.exit(0);
    } else if (SCENARIOS[argv[i]]) opts.scenarios.push(argv[i]);
    else {
      console.error(`unknown argument ${argv[i]}; scenarios: ${Object.keys(SCENARIOS).join(', ')}`);
      process.exit(2);
    }
  }
  if (!opts.scenarios.length) opts.scenarios = Object.keys(SCENARIOS);
  return opts;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const ctx = { bootstrap: opts.bootstrap, http: new Http(opts.http) };
  const failed = [];
  for (const name of opts.scenarios) {
    const started = Date.now();
    console.log(`--- kafkajs ${name}: running against kafka ${opts.bootstrap}, http ${opts.http}`);
    let timer;
    try {
      await Promise.race([
        SCENARIOS[name](ctx),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Mismatch(`did not finish within ${SCENARIO_TIMEOUT_MS / 1000}s`)), SCENARIO_TIMEOUT_MS);
        }),
      ]);
      console.log(`PASS kafkajs ${name} (${((Date.now() - started) / 1000).toFixed(1)}s)`);
    } catch (e) {
      failed.push(name);
      console.log(`FAIL kafkajs ${name}: ${e instanceof Mismatch ? e.message : e.stack || e}`);
    } finally {
      clearTimeout(timer);
    }
  }
  if (failed.length) {
    console.log(`kafkajs: FAILED scenarios: ${failed.join(' ')}`);
    process.exit(1);
  }
  console.log(`kafkajs: all scenarios ok (${opts.scenarios.join(' ')})`);
  process.exit(0); // do not wait for clients a failed scenario left connected
}

main().catch((e) => {
  console.log(`FAIL kafkajs: ${e.stack || e}`);
  process.exit(1);
});
