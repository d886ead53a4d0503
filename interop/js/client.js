#!/usr/bin/env node
// A foreign esignflow client: KafkaJS 2.2.4 with @kafkajs/confluent-schema-registry
// (avsc underneath) and no extra compression codec (no snappy, lz4, zstd).
//
// It sends one SigningRequest in the Confluent wire format with the schema
// esignflow registered (getLatestSchemaId + encode), then follows the envelope
// it makes on esignflow.status.v1 (readUncommitted: false) until a terminal
// status, checking that versions run 1, 2, 3... without a repeat or a gap.
// Prints one summary line; exits 0 on success, 1 on a broken contract, 2 on
// timeout, 3 on a setup or client error.
'use strict';

const crypto = require('node:crypto');
const { Kafka, Partitioners, logLevel } = require('kafkajs');
const { SchemaRegistry } = require('@kafkajs/confluent-schema-registry');

const NAME = 'js';
const REQUESTS = 'esignflow.requests.v1';
const STATUS = 'esignflow.status.v1';
const TERMINAL = new Set(['COMPLETED', 'DECLINED', 'VOIDED', 'EXPIRED', 'FAILED']);

class Violation extends Error {
  constructor(msg, code = 1) {
    super(msg);
    this.code = code;
  }
}

function parseArgs(argv) {
  const a = { brokers: '127.0.0.1:9092', registry: 'http://127.0.0.1:8081', timeout: 120, linger: 2, verbose: false };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) throw new Violation(`missing value for ${k}`, 64);
      return argv[++i];
    };
    switch (k) {
      case '--brokers': a.brokers = val(); break;
      case '--registry': a.registry = val(); break;
      case '--timeout': a.timeout = Number(val()); break;
      case '--linger': a.linger = Number(val()); break;
      case '-v': case '--verbose': a.verbose = true; break;
      default: throw new Violation(`unknown argument ${k}`, 64);
    }
  }
  if (!(a.timeout > 0) || !(a.linger >= 0)) throw new Violation('bad --timeout or --linger', 64);
  return a;
}

// Every field set: the registered schema carries no defaults. avsc takes plain
// values for ["null", X] unions (they are unambiguous, so not wrapped),
// enums as strings, and timestamp-millis as a plain number (no logical type
// registered with the registry client).
function signingRequest(requestId) {
  return {
    request_id: requestId,
    tenant: 'interop',
    provider: 'sim',
    documents: [
      { name: 'nda.pdf', content_type: 'application/pdf', uri: 's3://contracts/nda.pdf', sha256: null, content: null },
    ],
    recipients: [
      { id: 'r1', name: 'Ada Lovelace', email: 'ada@example.com', role: 'signer', routing_order: 1, auth: 'EMAIL', phone: null },
      { id: 'r2', name: 'Alan Turing', email: 'alan@example.com', role: 'signer', routing_order: 2, auth: 'EMAIL', phone: null },
    ],
    subject: `NDA (interop ${NAME})`,
    message: '',
    expires_at: null,
    metadata: { client: `interop-${NAME}` },
    requested_at: Date.now(),
  };
}

async function run(args) {
  const log = (m) => { if (args.verbose) process.stderr.write(`${NAME}: ${m}\n`); };
  const started = Date.now();
  const deadline = started + args.timeout * 1000;
  const requestId = `interop-${NAME}-${crypto.randomBytes(4).toString('hex')}`;

  const registry = new SchemaRegistry({ host: args.registry });
  let value;
  try {
    const id = await registry.getLatestSchemaId(`${REQUESTS}-value`);
    value = await registry.encode(id, signingRequest(requestId));
    log(`request ${requestId} encoded with schema id ${id} (${value.length} bytes)`);
  } catch (e) {
    throw new Violation(`encode the request: ${e && e.message ? e.message : e}`, 3);
  }
  if (value[0] !== 0) throw new Violation(`encode wrote magic byte ${value[0]}, want 0`);

  const kafka = new Kafka({
    clientId: 'interop-js',
    brokers: args.brokers.split(','),
    logLevel: args.verbose ? logLevel.WARN : logLevel.NOTHING,
    retry: { retries: 5 },
  });

  // Java-compatible murmur2, as franz-go and the Java client use.
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
  await producer.connect();
  try {
    const [md] = await producer.send({ topic: REQUESTS, acks: -1, messages: [{ key: requestId, value }] });
    log(`produced to ${REQUESTS}/${md.partition}@${md.baseOffset}`);
  } catch (e) {
    throw new Violation(`produce ${requestId}: ${e.message}`, 3);
  } finally {
    await producer.disconnect();
  }

  const consumer = kafka.consumer({
    groupId: `interop-js-${crypto.randomUUID()}`,
    readUncommitted: false,
    // A crash (for instance a record batch in a codec KafkaJS lacks) ends the run.
    retry: { retries: 3, restartOnFailure: async () => false },
  });

  const versions = new Map();
  const statuses = new Map();
  const path = [];
  const headerKeys = new Set();
  let terminal = null;
  const later = [];
  let settle;
  const done = new Promise((resolve) => { settle = resolve; });
  let finished = false;
  const finish = (err) => { if (!finished) { finished = true; settle(err); } };

  const handle = async ({ topic, partition, message }) => {
    if (finished) return;
    const where = `${topic}/${partition}@${message.offset}`;
    const raw = message.value;
    if (!raw || raw.length < 5) throw new Violation(`${where}: value of ${raw ? raw.length : 0} bytes is too short for the wire format`);
    if (raw[0] !== 0) throw new Violation(`${where}: magic byte ${raw[0]}, want 0`);
    let sc;
    try {
      sc = await registry.decode(raw);
    } catch (e) {
      throw new Violation(`${where}: decode (schema id ${raw.readUInt32BE(1)}): ${e.message}`);
    }
    const state = sc.state;
    if (state.request_id !== requestId) return;
    for (const k of Object.keys(message.headers || {})) headerKeys.add(k);
    const env = sc.envelope_id;
    const version = sc.version;
    const status = sc.status;
    const prev = sc.previous_status;
    const key = message.key ? message.key.toString() : null;
    log(`${where} key=${key} ${env} v${version} ${prev} -> ${status}`);
    if (typeof version !== 'number') throw new Violation(`${where}: version decoded as ${typeof version}`);
    if (key !== env) throw new Violation(`${where}: key ${key} is not the envelope id ${env}`);
    if (state.envelope_id !== env) throw new Violation(`${where}: state.envelope_id ${state.envelope_id} differs from envelope_id ${env}`);
    if (state.version !== version) throw new Violation(`${where}: state.version ${state.version} differs from version ${version}`);
    if (versions.size > 0 && !versions.has(env)) throw new Violation(`request ${requestId} has a second envelope ${env} besides ${[...versions.keys()]}`);
    const want = (versions.get(env) || 0) + 1;
    if (version < want) throw new Violation(`${where}: envelope ${env} version ${version} repeated (expected ${want})`);
    if (version > want) throw new Violation(`${where}: envelope ${env} version ${version} after ${want - 1}: gap`);
    const wantPrev = statuses.has(env) ? statuses.get(env) : null;
    if (prev !== wantPrev) throw new Violation(`${where}: envelope ${env} version ${version} previous_status ${prev}, but version ${version - 1} was ${wantPrev}`);
    versions.set(env, version);
    statuses.set(env, status);
    path.push(status);
    if (terminal) {
      later.push(`v${version} ${status}`);
    } else if (TERMINAL.has(status)) {
      terminal = { env, status, version };
      setTimeout(() => finish(null), args.linger * 1000);
    }
  };

  consumer.on(consumer.events.CRASH, (ev) => {
    const e = ev.payload.error;
    let hint = '';
    if (e && e.name === 'KafkaJSNotImplemented' && /compression/i.test(e.message)) {
      hint = ` (${STATUS} holds record batches in a codec KafkaJS decodes only with a plugin; it reads none and gzip by itself)`;
    }
    finish(new Violation(`consumer crashed: ${e && e.name ? e.name + ': ' : ''}${e && e.message ? e.message : e}${hint}`, 3));
  });

  const timer = setTimeout(() => {
    const seen = path.length ? path.join(' ') : 'no status change';
    finish(new Violation(`timeout after ${args.timeout}s waiting for request ${requestId} to reach a terminal status; seen ${seen}`, 2));
  }, Math.max(0, deadline - Date.now()));

  try {
    await consumer.connect();
    await consumer.subscribe({ topic: STATUS, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachMessage: async (p) => {
        try {
          await handle(p);
        } catch (e) {
          finish(e instanceof Violation ? e : new Violation(`${e.name || 'Error'}: ${e.message}`, 3));
        }
      },
    });
    const err = await done;
    if (err) throw err;
  } finally {
    clearTimeout(timer);
    await consumer.disconnect().catch(() => {});
  }
  log(`status path ${path.join(' ')}; record headers [${[...headerKeys].sort()}]`);
  const extra = later.length ? `; then ${later.join(', ')} (in order)` : '';
  return `${NAME}: request ${requestId} envelope ${terminal.env} reached ${terminal.status} in ${terminal.version} versions (${path.slice(0, terminal.version).join(' > ')})${extra}`;
}

(async () => {
  let code = 0;
  try {
    console.log(await run(parseArgs(process.argv.slice(2))));
  } catch (e) {
    console.log(`${NAME}: FAIL: ${e instanceof Violation ? e.message : (e && e.stack) || e}`);
    code = e instanceof Violation ? e.code : 3;
  }
  process.exit(code);
})();
