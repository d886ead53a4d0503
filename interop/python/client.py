#!/usr/bin/env python3
"""A foreign esignflow client: confluent-kafka (librdkafka) with its own Schema
Registry client and AvroSerializer/AvroDeserializer (fastavro).

It sends one SigningRequest in the Confluent wire format, using the schema
esignflow registered (auto.register.schemas=False, use.latest.version=True),
then follows the envelope it makes on esignflow.status.v1 (read_committed)
until a terminal status, checking that versions run 1, 2, 3... without a
repeat or a gap. Prints one summary line; exits 0 on success, 1 on a broken
contract, 2 on timeout, 3 on a setup error.
"""

import argparse
import datetime as dt
import secrets
import struct
import sys
import time
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

NAME = "python"
REQUESTS = "esignflow.requests.v1"
STATUS = "esignflow.status.v1"
TERMINAL = {"COMPLETED", "DECLINED", "VOIDED", "EXPIRED", "FAILED"}


class Violation(Exception):
    def __init__(self, msg, code=1):
        super().__init__(msg)
        self.code = code


def log(args, msg):
    if args.verbose:
        print(f"{NAME}: {msg}", file=sys.stderr, flush=True)


def signing_request(request_id):
    """Every field set: the schema the registry holds carries no defaults, so
    fastavro has none to fall back on."""
    return {
        "request_id": request_id,
        "tenant": "interop",
        "provider": "sim",
        "documents": [
            {
                "name": "nda.pdf",
                "content_type": "application/pdf",
                "uri": "s3://contracts/nda.pdf",  # ["null","string"]: fastavro takes the plain value
                "sha256": None,
                "content": None,
            }
        ],
        "recipients": [
            {"id": "r1", "name": "Ada Lovelace", "email": "ada@example.com", "role": "signer",
             "routing_order": 1, "auth": "EMAIL", "phone": None},
            {"id": "r2", "name": "Alan Turing", "email": "alan@example.com", "role": "signer",
             "routing_order": 2, "auth": "EMAIL", "phone": None},
        ],
        "subject": f"NDA (interop {NAME})",
        "message": "",
        "expires_at": None,
        "metadata": {"client": f"interop-{NAME}"},
        # timestamp-millis: fastavro takes an aware datetime (or an int of millis)
        "requested_at": dt.datetime.now(dt.timezone.utc),
    }


def run(args):
    deadline = time.monotonic() + args.timeout
    request_id = f"interop-{NAME}-{secrets.token_hex(4)}"
    sr = SchemaRegistryClient({"url": args.registry})

    ser = AvroSerializer(sr, None, conf={"auto.register.schemas": False, "use.latest.version": True})
    try:
        value = ser(signing_request(request_id), SerializationContext(REQUESTS, MessageField.VALUE))
    except Exception as e:  # registry unreachable, subject missing, a field the schema refuses
        raise Violation(f"serialize the request: {e!r}", 3)
    if value[0] != 0:
        raise Violation(f"AvroSerializer wrote magic byte {value[0]}, want 0")
    log(args, f"request {request_id} encoded with schema id {struct.unpack('>I', value[1:5])[0]} ({len(value)} bytes)")

    errors = []
    producer = Producer({
        "bootstrap.servers": args.brokers,
        "client.id": "interop-python",
        "acks": "all",
        "enable.idempotence": True,
        # librdkafka's default (consistent_random) hashes keys with CRC32; Java,
        # franz-go and KafkaJS use murmur2. Keep one request id on one partition
        # whichever client sends it.
        "partitioner": "murmur2_random",
        "message.timeout.ms": 30000,
        "log_level": 4,  # warnings and up: no telemetry chatter on stderr
    })

    def delivered(err, msg):
        if err is not None:
            errors.append(err)
        else:
            log(args, f"produced to {msg.topic()}/{msg.partition()}@{msg.offset()}")

    producer.produce(REQUESTS, key=request_id.encode(), value=value, on_delivery=delivered)
    left = producer.flush(max(1.0, deadline - time.monotonic()))
    if left or errors:
        raise Violation(f"produce {request_id}: {errors[0] if errors else 'not delivered in time'}", 3)

    deser = AvroDeserializer(sr)
    consumer = Consumer({
        "bootstrap.servers": args.brokers,
        "client.id": "interop-python",
        "group.id": f"interop-python-{uuid.uuid4()}",
        "isolation.level": "read_committed",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "log_level": 4,
    })
    consumer.subscribe([STATUS])
    versions, statuses, path, header_keys = {}, {}, [], set()
    terminal = None  # (envelope, status, version)
    linger_until = 0.0
    later = []
    try:
        while True:
            now = time.monotonic()
            if terminal and now >= linger_until:
                break
            if not terminal and now >= deadline:
                seen = " ".join(path) if path else "no status change"
                raise Violation(f"timeout after {args.timeout:g}s waiting for request {request_id} "
                                f"to reach a terminal status; seen {seen}", 2)
            msg = consumer.poll(0.25)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                if msg.error().fatal() or not msg.error().retriable():
                    raise Violation(f"consume: {msg.error()}", 3)
                log(args, f"consume: {msg.error()}")
                continue
            where = f"{msg.topic()}/{msg.partition()}@{msg.offset()}"
            raw = msg.value()
            if raw is None or len(raw) < 5:
                raise Violation(f"{where}: value of {0 if raw is None else len(raw)} bytes is too short for the wire format")
            if raw[0] != 0:
                raise Violation(f"{where}: magic byte {raw[0]}, want 0")
            try:
                sc = deser(raw, SerializationContext(msg.topic(), MessageField.VALUE, msg.headers()))
            except Exception as e:
                raise Violation(f"{where}: decode (schema id {struct.unpack('>I', raw[1:5])[0]}): {e!r}")
            state = sc["state"]
            if state.get("request_id") != request_id:
                continue
            for k, _ in msg.headers() or []:
                header_keys.add(k)
            env, version, status, prev = sc["envelope_id"], sc["version"], sc["status"], sc["previous_status"]
            key = msg.key().decode() if msg.key() is not None else None
            log(args, f"{where} key={key} {env} v{version} {prev} -> {status}")
            if key != env:
                raise Violation(f"{where}: key {key} is not the envelope id {env}")
            if state["envelope_id"] != env:
                raise Violation(f"{where}: state.envelope_id {state['envelope_id']} differs from envelope_id {env}")
            if state["version"] != version:
                raise Violation(f"{where}: state.version {state['version']} differs from version {version}")
            if versions and env not in versions:
                raise Violation(f"request {request_id} has a second envelope {env} besides {sorted(versions)}")
            want = versions.get(env, 0) + 1
            if version < want:
                raise Violation(f"{where}: envelope {env} version {version} repeated (expected {want})")
            if version > want:
                raise Violation(f"{where}: envelope {env} version {version} after {want - 1}: gap")
            if prev != statuses.get(env):
                raise Violation(f"{where}: envelope {env} version {version} previous_status {prev}, "
                                f"but version {version - 1} was {statuses.get(env)}")
            if not isinstance(sc["changed_at"], dt.datetime):
                raise Violation(f"{where}: changed_at decoded as {type(sc['changed_at']).__name__}, want a datetime (timestamp-millis)")
            versions[env], statuses[env] = version, status
            path.append(status)
            if terminal:
                later.append(f"v{version} {status}")
            elif status in TERMINAL:
                terminal = (env, status, version)
                linger_until = time.monotonic() + args.linger
    finally:
        consumer.close()
    log(args, f"status path {' '.join(path)}; record headers {sorted(header_keys)}")
    env, status, version = terminal
    extra = f"; then {', '.join(later)} (in order)" if later else ""
    return (f"{NAME}: request {request_id} envelope {env} reached {status} in {version} versions "
            f"({' > '.join(path[:version])}){extra}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--brokers", default="127.0.0.1:9092")
    p.add_argument("--registry", default="http://127.0.0.1:8081")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to reach a terminal status")
    p.add_argument("--linger", type=float, default=2.0, help="seconds to keep reading after the terminal status")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args()
    try:
        print(run(args), flush=True)
        return 0
    except Violation as v:
        print(f"{NAME}: FAIL: {v}", flush=True)
        return v.code
    except KafkaException as e:
        print(f"{NAME}: FAIL: kafka: {e}", flush=True)
        return 3
    except KeyboardInterrupt:
        print(f"{NAME}: FAIL: interrupted", flush=True)
        return 130


if __name__ == "__main__":
    sys.exit(main())
