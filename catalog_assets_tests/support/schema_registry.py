"""A real local HTTP server speaking the Confluent Schema Registry contract, with basic auth.

Enough of the REST API for a producer and a consumer: register a schema under a subject
(``POST /subjects/{subject}/versions``: the same schema text keeps its id), and fetch it by id
(``GET /schemas/ids/{id}``) or GUID (``GET /schemas/guids/{guid}``). With ``credentials`` set,
every request without exactly those basic-auth credentials gets 401, as Confluent Cloud answers.
Faults: ``fail_next(status, times)`` answers the next requests with an error status. Requests are
logged (path and the ``Authorization`` header's user, never the password).

    with LocalSchemaRegistry(credentials=("key", "secret")) as registry:
        registry.url  # http://127.0.0.1:PORT

With ``tls=make_tls_files(folder)`` it serves HTTPS with a certificate for 127.0.0.1 signed by
a throwaway CA, whose file (``TlsFiles.ca``) a client must be given to trust it.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import ssl
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit


@dataclass
class _Schema:
    id: int
    guid: str
    text: str
    schema_type: str = "AVRO"
    subjects: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TlsFiles:
    ca: str
    cert: str
    key: str


def make_tls_files(folder: Path) -> TlsFiles:
    """A CA and a server certificate for 127.0.0.1 it signed, as PEM files in ``folder``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test registry CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(str(folder / "ca.pem"), str(folder / "server.pem"), str(folder / "key.pem"))
    Path(files.ca).write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    Path(files.cert).write_bytes(server.public_bytes(serialization.Encoding.PEM))
    Path(files.key).write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


class LocalSchemaRegistry:
    """A schema registry on 127.0.0.1, on a free port."""

    def __init__(
        self, credentials: tuple[str, str] | None = None, tls: TlsFiles | None = None
    ) -> None:
        self.credentials = credentials
        self.tls = tls
        self._lock = threading.Lock()
        self._by_id: dict[int, _Schema] = {}
        self._by_text: dict[str, _Schema] = {}
        self._failures: list[int] = []
        self.requests: list[tuple[str, str, str | None]] = []  # method, path, basic-auth user
        self._server: ThreadingHTTPServer | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> LocalSchemaRegistry:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.registry = self  # type: ignore[attr-defined]
        if self.tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.tls.cert, self.tls.key)
            server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> LocalSchemaRegistry:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self._server.server_address[1]}"

    # -- contents and faults -------------------------------------------------------------------

    def add(self, text: str, subject: str = "direct", schema_type: str = "AVRO") -> int:
        """Register a schema as a producer would; its id (the same text keeps its id)."""
        with self._lock:
            schema = self._by_text.get(text)
            if schema is None:
                schema_id = len(self._by_id) + 1
                schema = _Schema(schema_id, str(uuid.uuid4()), text, schema_type)
                self._by_id[schema_id] = schema
                self._by_text[text] = schema
            if subject not in schema.subjects:
                schema.subjects.append(subject)
            return schema.id

    def guid_of(self, schema_id: int) -> str:
        return self._by_id[schema_id].guid

    def subjects(self) -> dict[str, int]:
        """subject -> id of the schema registered under it."""
        with self._lock:
            return {s: schema.id for schema in self._by_id.values() for s in schema.subjects}

    def fail_next(self, status: int, times: int = 1) -> None:
        with self._lock:
            self._failures.extend([status] * times)

    # -- serving ---------------------------------------------------------------------------------

    def _authorized(self, header: str | None) -> tuple[bool, str | None]:
        user = None
        if header and header.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            except ValueError:
                return False, None
            if self.credentials is None:
                return True, user
            return (user, password) == self.credentials, user
        return self.credentials is None, None

    def _route(self, method: str, path: str, body: bytes, auth: str | None) -> tuple[int, Any]:
        allowed, user = self._authorized(auth)
        with self._lock:
            self.requests.append((method, path, user))
            if self._failures:
                status = self._failures.pop(0)
                return status, {"error_code": status * 100, "message": "injected failure"}
        if not allowed:
            return 401, {"error_code": 401, "message": "Unauthorized"}
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if (
            method == "POST"
            and len(parts) == 3
            and parts[0] == "subjects"
            and parts[2] == "versions"
        ):
            request = json.loads(body or b"{}")
            schema_id = self.add(request["schema"], parts[1], request.get("schemaType", "AVRO"))
            return 200, {"id": schema_id, "guid": self.guid_of(schema_id)}
        if method == "GET" and len(parts) == 3 and parts[:2] == ["schemas", "ids"]:
            schema = self._by_id.get(int(parts[2])) if parts[2].isdigit() else None
            return self._schema_reply(schema, f"Schema {parts[2]} not found")
        if method == "GET" and len(parts) == 3 and parts[:2] == ["schemas", "guids"]:
            found = [s for s in self._by_id.values() if s.guid == parts[2]]
            return self._schema_reply(found[0] if found else None, f"Schema {parts[2]} not found")
        return 404, {"error_code": 404, "message": "HTTP 404 Not Found"}

    @staticmethod
    def _schema_reply(schema: _Schema | None, missing: str) -> tuple[int, Any]:
        if schema is None:
            return 404, {"error_code": 40403, "message": missing}
        reply: dict[str, Any] = {"schema": schema.text, "id": schema.id, "guid": schema.guid}
        if schema.schema_type != "AVRO":
            reply["schemaType"] = schema.schema_type
        return 200, reply


class _Handler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        registry: LocalSchemaRegistry = self.server.registry  # type: ignore[attr-defined]
        path = urlsplit(self.path).path
        status, reply = registry._route(method, path, body, self.headers.get("Authorization"))
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(data)))
        if status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="schema-registry"')
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def log_message(self, format: str, *args: Any) -> None:
        pass
