#!/usr/bin/env python3
"""A Modbus TCP or RTU server on pymodbus: the peer we did not write, for the Modbus mapper's tests.

    pymodbus_server.py tcp HOST PORT [--units 1,2] [--size 2000]
    pymodbus_server.py rtu DEVICE BAUD [--units 1] [--size 2000]

Every listed unit has coils, discrete inputs, holding and input registers at addresses 0..size-1,
all zero. Requests for any other unit are never answered (a dead slave), nor are requests for a
muted unit. Every request received is counted.

When it listens it prints one line, `READY tcp HOST:PORT` (the real port when 0 was asked for) or
`READY rtu DEVICE`. Then it reads commands on stdin, one per line, and answers each with one line of
JSON on stdout (the same protocol as our own `modbus-sim`):

    stats                            {"requests": N, "by_unit": {"1": N}, "by_function": {"3": N}}
    reset                            forget the counts
    mute UNIT / unmute UNIT          stop / resume answering for a unit
    get UNIT TABLE ADDRESS COUNT     {"values": [...]} (bits as 0/1)
    set UNIT TABLE ADDRESS VALUE...  write the datastore directly (any table)

TABLE is coils, discrete, holding or input. Pinned to pymodbus 3.16 (SimDevice / SimData API).
"""

import argparse
import asyncio
import json
import logging
import sys

from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

# Function codes whose datastore block holds each table (pymodbus maps blocks by function code).
TABLES = {"coils": 1, "discrete": 2, "holding": 3, "input": 4}


class Peer:
    """The datastore, the request counters and the muting of units."""

    def __init__(self, units, size):
        self.units = set(units)
        self.muted = set()
        self.size = size
        self.server = None
        self.dropping = False
        self.reset()

    def reset(self):
        self.requests = 0
        self.by_unit = {}
        self.by_function = {}

    def devices(self):
        def block(datatype, value):
            return [SimData(0, count=self.size, values=value, datatype=datatype)]

        return [
            SimDevice(
                id=unit,
                simdata=(
                    block(DataType.BITS, False),
                    block(DataType.BITS, False),
                    block(DataType.REGISTERS, 0),
                    block(DataType.REGISTERS, 0),
                ),
            )
            for unit in sorted(self.units)
        ]

    def answers(self, unit):
        return unit in self.units and unit not in self.muted

    def trace_pdu(self, sending, pdu):
        if sending:
            # Decides whether the frame about to be sent is dropped (see trace_packet).
            self.dropping = not self.answers(pdu.dev_id)
        else:
            self.requests += 1
            unit, function = str(pdu.dev_id), str(pdu.function_code)
            self.by_unit[unit] = self.by_unit.get(unit, 0) + 1
            self.by_function[function] = self.by_function.get(function, 0) + 1
        return pdu

    def trace_packet(self, sending, packet):
        if sending and self.dropping:
            self.dropping = False
            return b""
        return packet

    async def command(self, line):
        words = line.split()
        if not words:
            return {"error": "empty command"}
        name, args = words[0], words[1:]
        try:
            if name == "stats":
                return {
                    "requests": self.requests,
                    "by_unit": self.by_unit,
                    "by_function": self.by_function,
                }
            if name == "reset":
                self.reset()
                return {"ok": True}
            if name in ("mute", "unmute"):
                unit = int(args[0])
                (self.muted.add if name == "mute" else self.muted.discard)(unit)
                return {"ok": True}
            if name == "get":
                unit, table, address, count = int(args[0]), args[1], int(args[2]), int(args[3])
                values = await self.server.context.async_getValues(
                    unit, TABLES[table], address, count
                )
                if not isinstance(values, list):
                    return {"error": f"get failed: {values}"}
                return {"values": [int(v) for v in values[:count]]}
            if name == "set":
                unit, table, address = int(args[0]), args[1], int(args[2])
                values = [int(v) for v in args[3:]]
                if not values:
                    return {"error": "missing values"}
                if TABLES[table] in (1, 2):
                    values = [bool(v) for v in values]
                failed = await self.server.context.async_setValues(
                    unit, TABLES[table], address, values
                )
                return {"error": f"set failed: {failed}"} if failed else {"ok": True}
        except (IndexError, ValueError, KeyError) as exc:
            return {"error": f"bad command {line!r}: {exc!r}"}
        return {"error": f"unknown command {name!r}"}


async def control(peer):
    """Answers stdin commands until stdin closes."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        text = line.decode().strip()
        if text:
            print(json.dumps(await peer.command(text)), flush=True)


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["tcp", "rtu"])
    parser.add_argument("where", help="TCP host, or the serial device")
    parser.add_argument("port_or_baud", type=int, help="TCP port (0: any), or the baud rate")
    parser.add_argument("--units", default="1", help="comma-separated unit ids that answer")
    parser.add_argument("--size", type=int, default=2000, help="addresses per table")
    parser.add_argument(
        "--log-level",
        default="critical",
        help="pymodbus log level (its errors about the silent units are expected noise)",
    )
    args = parser.parse_args()
    logging.getLogger("pymodbus").setLevel(args.log_level.upper())

    peer = Peer([int(u) for u in args.units.split(",") if u], args.size)
    hooks = {"trace_pdu": peer.trace_pdu, "trace_packet": peer.trace_packet}
    if args.mode == "tcp":
        peer.server = ModbusTcpServer(
            peer.devices(), address=(args.where, args.port_or_baud), **hooks
        )
        await peer.server.serve_forever(background=True)
        host, port = peer.server.transport.sockets[0].getsockname()[:2]
        print(f"READY tcp {host}:{port}", flush=True)
    else:
        peer.server = ModbusSerialServer(
            peer.devices(), port=args.where, baudrate=args.port_or_baud, **hooks
        )
        await peer.server.serve_forever(background=True)
        print(f"READY rtu {args.where}", flush=True)
    await control(peer)
    # stdin closed: keep serving until killed.
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
