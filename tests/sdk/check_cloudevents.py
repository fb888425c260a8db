"""Reads messages the relay published, exactly as they were consumed from the real brokers
(dumped by tests/tests/e2e_sdk.rs), with the official CloudEvents Python SDK's bindings,
and checks that every attribute and `data` come back as the relay wrote them.

Input: a JSON-lines file; each line is one consumed message:
  {"binding": "kafka" | "rabbitmq" | "nats", "mode": "structured" | "binary",
   "headers": {name: value}, "content_type": str | null, "key": str | null,
   "body_b64": str, "expected": <the envelope as the relay spooled it>}

NATS has no binding in the SDK; its binding follows the HTTP one (ce- headers, values
percent-encoded), so NATS messages are read with the SDK's HTTP binding.

Prints one line per binding and mode, `N passed, N failed` last; exits 1 on any failure.
"""

import base64
import json
import sys
from datetime import datetime

from cloudevents.core.bindings import http, kafka, rabbitmq
from cloudevents.core.formats.json import JSONFormat

ATTRIBUTES = [
    "specversion", "id", "source", "type", "subject", "time", "datacontenttype",
    "actorid", "targetid", "objectid", "ingress", "xformat",
]


def decode(msg):
    body = base64.b64decode(msg["body_b64"])
    fmt = JSONFormat()
    if msg["binding"] == "kafka":
        headers = {k: v.encode() for k, v in msg["headers"].items()}
        key = msg["key"].encode() if msg["key"] is not None else None
        return kafka.from_kafka(kafka.KafkaMessage(headers=headers, key=key, value=body), fmt)
    if msg["binding"] == "rabbitmq":
        m = rabbitmq.RabbitMQMessage(
            headers=msg["headers"], content_type=msg["content_type"], body=body
        )
        return rabbitmq.from_rabbitmq(m, fmt)
    headers = dict(msg["headers"])
    if msg["content_type"] is not None:
        headers["content-type"] = msg["content_type"]
    return http.from_http(http.HTTPMessage(headers=headers, body=body), fmt)


def same_time(got, want):
    if isinstance(got, datetime):
        want_dt = datetime.fromisoformat(want.replace("Z", "+00:00"))
        return got == want_dt
    return got == want


def check(msg):
    event = decode(msg)
    attrs = event.get_attributes()
    want = msg["expected"]
    problems = []
    for name in ATTRIBUTES:
        if name not in want:
            if attrs.get(name) is not None:
                problems.append(f"{name}: unexpected {attrs.get(name)!r}")
            continue
        got = attrs.get(name)
        ok = same_time(got, want[name]) if name == "time" else got == want[name]
        if not ok:
            problems.append(f"{name}: got {got!r}, want {want[name]!r}")
    data = event.get_data()
    if isinstance(data, (bytes, bytearray)):
        data = json.loads(data)
    if data != want["data"]:
        problems.append("data differs")
    return problems


def main(path):
    passed = failed = 0
    by_kind = {}
    for line in open(path, encoding="utf-8"):
        msg = json.loads(line)
        kind = f'{msg["binding"]} {msg["mode"]}'
        try:
            problems = check(msg)
        except Exception as e:  # the SDK refused the message
            problems = [f"SDK error: {type(e).__name__}: {e}"]
        ok, bad = by_kind.get(kind, (0, 0))
        if problems:
            failed += 1
            by_kind[kind] = (ok, bad + 1)
            if bad < 3:
                print(f"FAIL {kind} {msg['expected'].get('id')}: {'; '.join(problems)}")
        else:
            passed += 1
            by_kind[kind] = (ok + 1, bad)
    for kind, (ok, bad) in sorted(by_kind.items()):
        print(f"{kind}: {ok} read unmodified, {bad} not")
    print(f"sdk: {passed} read unmodified, {failed} not")
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
