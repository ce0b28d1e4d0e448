"""A KubeEdge-style mapper written with Eclipse paho (not our MQTT client), for the edge bench.

It reports one property at a time on `$hw/events/device/{id}/twin/update` and waits for the
agent's `…/twin/update/result`, the DeviceTwin contract of KubeEdge's own mappers. paho is used
as it comes: its socket keeps Nagle's algorithm on, as most MQTT clients do.

    python paho_mapper.py --port P back-to-back --count 2000 --warmup 200
    python paho_mapper.py --port P paced --rate 20 --count 200 --warmup 20
    python paho_mapper.py --port P burst --count 5000

Prints one JSON object on stdout: latencies in microseconds (p50, p99, max) or, for a burst,
results per second and how many results never came. Exits non-zero when an answer to a round
trip does not come within --timeout seconds.
"""

import argparse
import json
import sys
import time

import paho.mqtt.client as mqtt

RESULT_FILTER = "$hw/events/device/+/+/twin/update/result"


def report(n, devices, properties, namespace):
    """Topic and payload of report `n`: one property of one device, a value never sent before."""
    device = n % devices
    prop = (n // devices) % properties
    topic = f"$hw/events/device/{namespace}/dev-{device}/twin/update"
    payload = json.dumps(
        {
            "event_id": f"paho-{n}",
            "timestamp": int(time.time() * 1000),
            "twin": {f"p{prop}": {"actual": {"value": str(n + 1_000_000)}}},
        },
        separators=(",", ":"),
    )
    return topic, payload


class Mapper:
    """One paho client, driven from this thread (no background loop thread in the timing)."""

    def __init__(self, args):
        self.args = args
        self.results = {}
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"paho-mapper-{args.port}-{time.monotonic_ns()}",
            protocol=mqtt.MQTTv311,
        )
        self.client.on_message = self.on_message
        self.subscribed = False
        self.client.on_subscribe = self.on_subscribe
        self.client.connect("127.0.0.1", args.port, keepalive=60)
        if args.nodelay:
            import socket

            self.client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.client.subscribe(RESULT_FILTER, qos=args.qos)
        self.wait(lambda: self.subscribed, "SUBACK")

    def on_subscribe(self, _client, _userdata, _mid, _codes, _properties):
        self.subscribed = True

    def on_message(self, _client, _userdata, message):
        now = time.perf_counter_ns()
        try:
            event_id = json.loads(message.payload).get("event_id", "")
        except ValueError:
            return
        self.results[event_id] = now

    def wait(self, done, what):
        deadline = time.monotonic() + self.args.timeout
        while not done():
            if time.monotonic() > deadline:
                sys.exit(f"paho mapper: no {what} within {self.args.timeout} s")
            self.client.loop(timeout=0.01)

    def publish(self, n):
        n += self.args.offset
        topic, payload = report(n, self.args.devices, self.args.properties, self.args.namespace)
        sent = time.perf_counter_ns()
        self.client.publish(topic, payload, qos=self.args.qos)
        return f"paho-{n}", sent

    def round_trips(self, count, warmup, interval_s):
        samples = []
        next_at = time.monotonic()
        for n in range(count + warmup):
            if interval_s:
                # Paced: one request per interval, whatever the answer's latency.
                while time.monotonic() < next_at:
                    self.client.loop(timeout=max(0.0, min(0.01, next_at - time.monotonic())))
                next_at += interval_s
            event_id, sent = self.publish(n)
            self.wait(lambda: event_id in self.results, f"update/result for {event_id}")
            if n >= warmup:
                samples.append((self.results[event_id] - sent) / 1000)
            self.results.clear()
        samples.sort()
        return {
            "samples": len(samples),
            "p50_us": samples[len(samples) // 2],
            "p99_us": samples[len(samples) * 99 // 100],
            "max_us": samples[-1],
        }

    def burst(self, count):
        started = time.perf_counter_ns()
        ids = [self.publish(n)[0] for n in range(count)]
        # Until every result is in, or none came for --quiet seconds (then the rest are lost).
        quiet_until = time.monotonic() + self.args.quiet
        seen = 0
        while len(self.results) < count and time.monotonic() < quiet_until:
            self.client.loop(timeout=0.01)
            if len(self.results) > seen:
                seen = len(self.results)
                quiet_until = time.monotonic() + self.args.quiet
        missing = sum(1 for i in ids if i not in self.results)
        if not self.results:
            sys.exit(f"paho mapper: none of {count} results within {self.args.quiet} s")
        last = max(self.results.values())
        received = count - missing
        return {
            "results": received,
            "missing": missing,
            "per_second": received / ((last - started) / 1e9),
        }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--properties", type=int, default=10)
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--qos", type=int, default=1, choices=[0, 1])
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--offset", type=int, default=0, help="first report number (unique values)")
    parser.add_argument("--nodelay", action="store_true", help="TCP_NODELAY on paho's socket")
    parser.add_argument("--quiet", type=float, default=5.0, help="burst: give up after so long without a result")
    modes = parser.add_subparsers(dest="mode", required=True)
    back = modes.add_parser("back-to-back", help="the next request when the result arrives")
    back.add_argument("--count", type=int, default=2000)
    back.add_argument("--warmup", type=int, default=200)
    paced = modes.add_parser("paced", help="requests at a fixed rate")
    paced.add_argument("--rate", type=float, default=20.0)
    paced.add_argument("--count", type=int, default=200)
    paced.add_argument("--warmup", type=int, default=20)
    burst = modes.add_parser("burst", help="all requests at once, then wait for every result")
    burst.add_argument("--count", type=int, default=5000)
    args = parser.parse_args()

    mapper = Mapper(args)
    if args.mode == "burst":
        out = mapper.burst(args.count)
    else:
        interval = 1.0 / args.rate if args.mode == "paced" else 0.0
        out = mapper.round_trips(args.count, args.warmup, interval)
    mapper.client.disconnect()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
