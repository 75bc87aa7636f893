#!/usr/bin/env node
// Emit Herald domain events from Node.js: avsc frames each event as Avro single-object encoding
// (C3 01 + CRC-64-AVRO fingerprint + body), kafkajs produces it to herald.events keyed by user id.
// docs/wire-format.md describes the format; this file is the whole client.
//
//   node emit.js --type comment_reply --user u-42 --data '{"author":"Ana","post_title":"Kafka"}'
//
// Brokers come from --brokers or KAFKA_BOOTSTRAP_SERVERS (default 127.0.0.1:9092); the topic from
// --topic, else "<HERALD_TOPIC_PREFIX or herald>.events". Prints one JSON line per event sent.
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { parseArgs } = require('node:util');

const avro = require('avsc');
const { Kafka, Partitioners, logLevel } = require('kafkajs');

const SCHEMA_FILE = path.join(__dirname, '..', '..', 'schemas', 'avro', 'DomainEvent.v2.avsc');
const MAGIC = Buffer.from([0xc3, 0x01]);

// CRC-64-AVRO, as listed in the Avro specification ("Schema Fingerprints").
const EMPTY = 0xc15d213aa4d7a795n;
const TABLE = Array.from({ length: 256 }, (_, i) => {
  let fp = BigInt(i);
  for (let j = 0; j < 8; j++) fp = (fp >> 1n) ^ (EMPTY & -(fp & 1n));
  return fp;
});

function crc64avro(bytes) {
  let fp = EMPTY;
  for (const byte of bytes) fp = (fp >> 8n) ^ TABLE[Number((fp ^ BigInt(byte)) & 0xffn)];
  return fp;
}

// The single-object header: C3 01, then the fingerprint of the schema's Parsing Canonical Form
// (avsc's `JSON.stringify(type.schema())`) as 8 little-endian bytes.
function header(type) {
  const fingerprint = Buffer.alloc(8);
  fingerprint.writeBigUInt64LE(crc64avro(Buffer.from(JSON.stringify(type.schema()), 'utf8')));
  return Buffer.concat([MAGIC, fingerprint]);
}

class HeraldEmitter {
  constructor({ brokers, topic = 'herald.events', schemaFile = SCHEMA_FILE, clientId = 'herald-node-emitter' }) {
    this.topic = topic;
    this.type = avro.Type.forSchema(JSON.parse(fs.readFileSync(schemaFile, 'utf8')));
    this.header = header(this.type);
    const kafka = new Kafka({ clientId, brokers, logLevel: logLevel.WARN });
    // The Java-compatible murmur2 partitioner, as Herald's Python emitter (aiokafka) uses: the same
    // user id lands on the same partition whichever language emitted it, so per-user order holds.
    this.producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
  }

  encode(event) {
    return Buffer.concat([this.header, this.type.toBuffer(event)]);
  }

  async connect() {
    await this.producer.connect();
  }

  async disconnect() {
    await this.producer.disconnect();
  }

  // Build, validate, encode and produce one event (acks from every in-sync replica).
  async emit(type, { userId, data = {}, locale = null, tenant = null, eventId, occurredAt } = {}) {
    if (!type || !type.trim()) throw new Error('event type must not be empty');
    if (!userId) throw new Error('userId must not be empty');
    const event = {
      event_id: eventId || crypto.randomUUID(),
      type,
      occurred_at: (occurredAt || new Date()).getTime(), // timestamp-millis
      user_id: userId,
      tenant,
      locale,
      payload: JSON.stringify(data), // template variables, as a JSON object in a string
    };
    const [meta] = await this.producer.send({
      topic: this.topic,
      acks: -1,
      messages: [{ key: userId, value: this.encode(event) }],
    });
    return { event, partition: meta.partition, offset: meta.baseOffset };
  }
}

async function main() {
  const { values } = parseArgs({
    options: {
      brokers: { type: 'string', default: process.env.KAFKA_BOOTSTRAP_SERVERS || '127.0.0.1:9092' },
      topic: { type: 'string', default: `${process.env.HERALD_TOPIC_PREFIX || 'herald'}.events` },
      type: { type: 'string' },
      user: { type: 'string', multiple: true },
      data: { type: 'string', default: '{}' },
      locale: { type: 'string' },
      tenant: { type: 'string' },
    },
  });
  if (!values.type || !values.user) {
    console.error('usage: emit.js --type EVENT_TYPE --user USER_ID [--user ...] [--data JSON] [--locale L]');
    process.exit(2);
  }
  const emitter = new HeraldEmitter({ brokers: values.brokers.split(','), topic: values.topic });
  await emitter.connect();
  try {
    for (const userId of values.user) {
      const sent = await emitter.emit(values.type, {
        userId,
        data: JSON.parse(values.data),
        locale: values.locale || null,
        tenant: values.tenant || null,
      });
      console.log(JSON.stringify({ event_id: sent.event.event_id, user_id: userId, topic: emitter.topic,
        partition: sent.partition, offset: sent.offset, header: emitter.header.toString('hex') }));
    }
  } finally {
    await emitter.disconnect();
  }
}

module.exports = { HeraldEmitter, crc64avro, header };

if (require.main === module) {
  main().catch((err) => {
    console.error(`emit.js: ${err.message}`);
    process.exit(1);
  });
}
