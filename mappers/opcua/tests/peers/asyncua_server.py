#!/usr/bin/env python3
"""An OPC UA server on python asyncua: the peer we did not write, for the OPC-UA mapper's tests.

    asyncua_server.py --port PORT --certs DIR [--user NAME --password-file FILE] [--user-cert FILE]

Endpoint `opc.tcp://127.0.0.1:PORT/edgetwin/` with SecurityPolicy None, Basic256Sha256 (Sign and
SignAndEncrypt), Aes128_Sha256_RsaOaep and Aes256_Sha256_RsaPss (SignAndEncrypt); anonymous logins, and user name logins for the one user given (its password read
from the file). The server's certificate and key live in DIR (server-cert.der, server-key.pem),
generated when missing and reused by a restart on the same DIR. Port 0: a free port.

Namespace `urn:edgetwin:asyncua-peer:device` (index 2). Objects/Device holds one writable variable per
supported type, node id `ns=2;s=<type name>` and browse name `2:<type name>`: Boolean, SByte,
Byte, Int16, UInt16, Int32, UInt32, Int64, UInt64, Float, Double, String, DateTime, ByteString;
plus `ns=2;s=Setpoint` (Double), `ns=2;i=5001` (Int32, a numeric node id), and
`ns=2;s=Guid` (a Guid, a type the mapper does not write).

When it listens it prints one line, `READY opc.tcp://127.0.0.1:PORT/edgetwin/ ns=2`. Then it
reads commands on stdin, one per line, and answers each with one line of JSON on stdout:

    get NAME            {"value": "..."} (the variable's value as text)
    set NAME VALUE      {"ok": true} (VALUE parsed as the variable's type)
    reads               {"reads": N}: Read service calls that named a node of namespace 2
    user                {"user": "..."}: who the last session logged in as (anonymous, the user
                        name, or certificate)
    reset               forget the count
"""

import argparse
import asyncio
import datetime
import json
import logging
import socket
import struct
import sys
import uuid
from pathlib import Path

from asyncua import Server, ua
from asyncua.crypto import uacrypto
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.internal_session import InternalSession
from asyncua.server.user_managers import UserManager
from cryptography.x509.oid import ExtendedKeyUsageOID

APP_URI = "urn:edgetwin:asyncua-peer"
NAMESPACE_URI = "urn:edgetwin:asyncua-peer:device"

TYPES = {
    "Boolean": (ua.VariantType.Boolean, True),
    "SByte": (ua.VariantType.SByte, -8),
    "Byte": (ua.VariantType.Byte, 8),
    "Int16": (ua.VariantType.Int16, -16),
    "UInt16": (ua.VariantType.UInt16, 16),
    "Int32": (ua.VariantType.Int32, -32),
    "UInt32": (ua.VariantType.UInt32, 32),
    "Int64": (ua.VariantType.Int64, -64),
    "UInt64": (ua.VariantType.UInt64, 64),
    "Float": (ua.VariantType.Float, 1.5),
    "Double": (ua.VariantType.Double, 2.25),
    "String": (ua.VariantType.String, "pump-1"),
    "DateTime": (ua.VariantType.DateTime, datetime.datetime(2024, 5, 1, 12, 0, 0, tzinfo=datetime.timezone.utc)),
    "ByteString": (ua.VariantType.ByteString, b"raw"),
    "Setpoint": (ua.VariantType.Double, 20.0),
    "Guid": (ua.VariantType.Guid, uuid.UUID("72962b91-fa75-4ae6-8d28-b404dc7daf63")),
}


class OneUser(UserManager):
    """Accepts anonymous logins, the one configured user with its password and the one user
    certificate (the server has checked the token's signature with it)."""

    def __init__(self, user, password, certificate_der):
        self.user = user
        self.password = password
        self.certificate_der = certificate_der
        self.last = None

    def get_user(self, iserver, username=None, password=None, certificate=None):
        if username is None:
            # `certificate` is the user token's for an X.509 login, the channel's otherwise.
            if self.certificate_der is not None and certificate == self.certificate_der:
                self.last = "certificate"
            else:
                self.last = "anonymous"
            return User(role=UserRole.User, name=self.last)
        if self.user is not None and username == self.user and password == self.password:
            self.last = username
            return User(role=UserRole.User, name=username)
        return None


class ReadCounter:
    """Counts clients' Read service calls that name a node of our namespace (not the client's
    keep-alive, not this script's own reads)."""

    def __init__(self, internal, ns):
        self.reads = 0
        original = InternalSession.read
        counter = self

        async def read(session, params):
            if session is not internal and any(rv.NodeId.NamespaceIndex == ns for rv in params.NodesToRead):
                counter.reads += 1
            return await original(session, params)

        InternalSession.read = read


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse(vtype, text):
    if vtype == ua.VariantType.Boolean:
        return text.strip().lower() == "true"
    if vtype in (ua.VariantType.Float, ua.VariantType.Double):
        return float(text)
    if vtype == ua.VariantType.String:
        return text
    if vtype == ua.VariantType.ByteString:
        return text.encode()
    if vtype == ua.VariantType.DateTime:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if vtype == ua.VariantType.Guid:
        return uuid.UUID(text)
    return int(text)


def show(value, vtype=None):
    if vtype == ua.VariantType.Float:
        # The shortest decimal that reads back as the same 32-bit float.
        packed = struct.pack("<f", value)
        for digits in range(1, 18):
            text = f"{value:.{digits}g}"
            if struct.pack("<f", float(text)) == packed:
                return text
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return value.astimezone(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return str(value)


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--certs", required=True)
    parser.add_argument("--user")
    parser.add_argument("--password-file")
    parser.add_argument("--user-cert")
    args = parser.parse_args()
    user_cert = None
    if args.user_cert:
        user_cert = uacrypto.der_from_x509(await uacrypto.load_certificate(args.user_cert))
    password = None
    if args.password_file:
        password = Path(args.password_file).read_text().rstrip("\r\n")

    certs = Path(args.certs)
    certs.mkdir(parents=True, exist_ok=True)
    cert, key = certs / "server-cert.der", certs / "server-key.pem"
    await setup_self_signed_certificate(
        key, cert, APP_URI, "127.0.0.1", [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        {"countryName": "DE", "organizationName": "edgetwin tests", "commonName": "asyncua-peer"},
    )

    port = args.port or free_port()
    url = f"opc.tcp://127.0.0.1:{port}/edgetwin/"
    users = OneUser(args.user, password, user_cert)
    server = Server(user_manager=users)
    await server.init()
    server.set_endpoint(url)
    server.set_server_name("edgetwin asyncua peer")
    await server.set_application_uri(APP_URI)
    server.set_security_policy([
        ua.SecurityPolicyType.NoSecurity,
        ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
        ua.SecurityPolicyType.Basic256Sha256_Sign,
        ua.SecurityPolicyType.Aes128Sha256RsaOaep_SignAndEncrypt,
        ua.SecurityPolicyType.Aes256Sha256RsaPss_SignAndEncrypt,
    ])
    server.set_identity_tokens([ua.AnonymousIdentityToken, ua.UserNameIdentityToken, ua.X509IdentityToken])
    await server.load_certificate(str(cert))
    await server.load_private_key(str(key))
    ns = await server.register_namespace(NAMESPACE_URI)
    device = await server.nodes.objects.add_object(ua.NodeId("Device", ns), ua.QualifiedName("Device", ns))
    nodes = {}
    for name, (vtype, value) in TYPES.items():
        node = await device.add_variable(ua.NodeId(name, ns), ua.QualifiedName(name, ns), value, varianttype=vtype)
        await node.set_writable()
        nodes[name] = (node, vtype)
    numeric = await device.add_variable(ua.NodeId(5001, ns), ua.QualifiedName("Numeric", ns), 5001, varianttype=ua.VariantType.Int32)
    await numeric.set_writable()
    nodes["5001"] = (numeric, ua.VariantType.Int32)
    counter = ReadCounter(server.iserver.isession, ns)

    async with server:
        print(f"READY {url} ns={ns}", flush=True)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while True:
            line = await reader.readline()
            if not line:
                # stdin closed: serve until killed.
                await asyncio.Event().wait()
            words = line.decode().strip().split(" ", 2)
            try:
                if words[0] == "reads":
                    answer = {"reads": counter.reads}
                elif words[0] == "user":
                    answer = {"user": users.last}
                elif words[0] == "reset":
                    counter.reads = 0
                    answer = {"ok": True}
                elif words[0] == "get":
                    node, vtype = nodes[words[1]]
                    answer = {"value": show(await node.read_value(), vtype)}
                elif words[0] == "set":
                    node, vtype = nodes[words[1]]
                    await node.write_value(ua.Variant(parse(vtype, words[2] if len(words) > 2 else ""), vtype))
                    answer = {"ok": True}
                else:
                    answer = {"error": f"unknown command {words[0]!r}"}
            except Exception as error:  # noqa: BLE001 - every failure is answered, the peer keeps running
                answer = {"error": f"{type(error).__name__}: {error}"}
            print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(main())
