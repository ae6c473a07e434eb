"""Stand-ins for the services real clients talk to, for the `vault run` client tests
(tests/cli/run_clients.rs): one HTTPS server on 127.0.0.1 that answers by the Host it is
called as.

- sts.test.example: AWS STS GetCallerIdentity, answered only when the request carries a valid
  AWS Signature Version 4 made with the secret key given here (checked the way AWS does,
  from the request as it arrived); anything else gets AWS's SignatureDoesNotMatch.
- pypi.test.example: a PEP 503 "simple" index for one tiny wheel, built here, behind HTTP
  basic authentication; its file links point at files.test.example.
- files.test.example: the wheel itself, without authentication (as files.pythonhosted.org).
- git.test.example: `git http-backend` (smart HTTP) for the repositories under --git-root,
  behind HTTP basic authentication.
- mirror.test.example: the same repositories without authentication.

Usage: local_services.py --cert PEM --key PEM --aws-access-key-id ID --aws-secret KEY
       --basic USER:PASSWORD --git-root DIR
Prints the port on the first line of standard output, then serves until killed.
"""

import argparse
import base64
import hashlib
import hmac
import http.server
import io
import os
import ssl
import subprocess
import sys
import urllib.parse
import zipfile

PACKAGE = "agentvault-probe"
MODULE = "agentvault_probe"
VERSION = "0.1.0"
WHEEL = f"{MODULE}-{VERSION}-py3-none-any.whl"


def build_wheel():
    """A minimal pure-Python wheel: one module, its metadata and its RECORD."""
    files = {
        f"{MODULE}/__init__.py": b'MESSAGE = "installed through agent-vault"\n',
        f"{MODULE}-{VERSION}.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: {VERSION}\n".encode()
        ),
        f"{MODULE}-{VERSION}.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: agent-vault tests\n"
            b"Root-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
        record.append(f"{name},sha256={digest.decode()},{len(data)}")
    record.append(f"{MODULE}-{VERSION}.dist-info/RECORD,,")
    files[f"{MODULE}-{VERSION}.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def sigv4_problem(method, target, headers, body, access_key_id, secret):
    """None if the request's SigV4 `Authorization` is valid for `secret`, else why not."""
    authorization = headers.get("authorization", "")
    prefix = "AWS4-HMAC-SHA256 "
    if not authorization.startswith(prefix):
        return "no AWS4-HMAC-SHA256 authorization"
    fields = dict(
        part.strip().split("=", 1) for part in authorization[len(prefix):].split(",")
    )
    key_id, date, region, service, terminal = fields["Credential"].split("/")
    if key_id != access_key_id:
        return f"signed with access key {key_id}"
    signed = fields["SignedHeaders"].split(";")
    if "host" not in signed:
        return "host is not signed"
    path, _, query = target.partition("?")
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    quote = lambda text: urllib.parse.quote(text, safe="-_.~")
    canonical_query = "&".join(
        f"{quote(name)}={quote(value)}" for name, value in sorted(pairs)
    )
    canonical_headers = "".join(
        f"{name}:{' '.join(headers.get(name, '').split())}\n" for name in signed
    )
    payload = headers.get("x-amz-content-sha256") or hashlib.sha256(body).hexdigest()
    canonical = "\n".join(
        [method, path or "/", canonical_query, canonical_headers, ";".join(signed), payload]
    )
    scope = f"{date}/{region}/{service}/{terminal}"
    to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            headers.get("x-amz-date", ""),
            scope,
            hashlib.sha256(canonical.encode()).hexdigest(),
        ]
    )
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, terminal):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, fields["Signature"]):
        return "the signature does not match"
    return None


CALLER_IDENTITY = b"""<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <GetCallerIdentityResult>
    <Arn>arn:aws:iam::123456789012:user/agent-vault-probe</Arn>
    <UserId>AIDAAGENTVAULTPROBE</UserId>
    <Account>123456789012</Account>
  </GetCallerIdentityResult>
  <ResponseMetadata><RequestId>0f2c9b1e-0000-4000-8000-agentvault00</RequestId></ResponseMetadata>
</GetCallerIdentityResponse>
"""

SIGNATURE_MISMATCH = b"""<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <Error><Type>Sender</Type><Code>SignatureDoesNotMatch</Code>
  <Message>The request signature we calculated does not match the signature you provided.</Message></Error>
  <RequestId>0f2c9b1e-0000-4000-8000-agentvault01</RequestId>
</ErrorResponse>
"""


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    options = None
    wheel = b""

    def log_message(self, format, *args):
        sys.stderr.write("local_services: " + (format % args) + "\n")

    def log_request(self, code="-", size="-"):
        # Only refusals and failures: what a failing test needs to see.
        if isinstance(code, int) and code >= 400 and self.headers.get("authorization"):
            super().log_request(code, size)

    def do_GET(self):
        self.dispatch()

    def do_POST(self):
        self.dispatch()

    def read_body(self):
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return body
                body += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("content-length") or 0))

    def send(self, status, body, content_type="text/plain", headers=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def basic_ok(self):
        expected = "Basic " + base64.b64encode(self.options.basic.encode()).decode()
        if hmac.compare_digest(self.headers.get("authorization", ""), expected):
            return True
        self.send(401, b"authentication required\n", headers=[("WWW-Authenticate", 'Basic realm="test"')])
        return False

    def dispatch(self):
        body = self.read_body()
        host = self.headers.get("host", "").split(":")[0]
        if host == "sts.test.example":
            self.sts(body)
        elif host == "pypi.test.example":
            if self.basic_ok():
                self.index()
        elif host == "files.test.example" and self.path == f"/packages/{WHEEL}":
            self.send(200, self.wheel, "application/octet-stream")
        elif host == "git.test.example":
            if self.basic_ok():
                self.git(body)
        elif host == "mirror.test.example":
            self.git(body)
        else:
            self.send(404, f"nothing at {host}{self.path}\n".encode())

    def sts(self, body):
        headers = {name.lower(): value for name, value in self.headers.items()}
        problem = sigv4_problem(
            self.command,
            self.path,
            headers,
            body,
            self.options.aws_access_key_id,
            self.options.aws_secret,
        )
        if problem is not None:
            self.log_message("sts: %s", problem)
            self.send(403, SIGNATURE_MISMATCH, "text/xml")
        elif b"Action=GetCallerIdentity" not in body:
            self.send(400, b"only GetCallerIdentity here\n")
        else:
            self.send(200, CALLER_IDENTITY, "text/xml")

    def index(self):
        if self.path.rstrip("/") in ("/simple", ""):
            page = f'<a href="/simple/{PACKAGE}/">{PACKAGE}</a>\n'
        elif self.path.rstrip("/") == f"/simple/{PACKAGE}":
            digest = hashlib.sha256(self.wheel).hexdigest()
            port = self.server.server_address[1]
            url = f"https://files.test.example:{port}/packages/{WHEEL}#sha256={digest}"
            page = f'<a href="{url}">{WHEEL}</a>\n'
        else:
            self.send(404, b"no such project\n")
            return
        self.send(200, f"<!DOCTYPE html><html><body>\n{page}</body></html>\n".encode(), "text/html")

    def git(self, body):
        path, _, query = self.path.partition("?")
        environment = {
            "PATH": os.environ.get("PATH", ""),
            "GIT_PROJECT_ROOT": self.options.git_root,
            "GIT_HTTP_EXPORT_ALL": "1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": urllib.parse.unquote(path),
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("content-type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": "127.0.0.1",
        }
        for name in ("content-encoding", "git-protocol"):
            if name in self.headers:
                environment["HTTP_" + name.upper().replace("-", "_")] = self.headers[name]
        result = subprocess.run(
            ["git", "http-backend"], input=body, env=environment, capture_output=True
        )
        head, _, payload = result.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = result.stdout.partition(b"\n\n")
        status = 200
        headers = []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name.strip(), value.strip()))
        content_type = next((v for n, v in headers if n.lower() == "content-type"), "text/plain")
        others = [(n, v) for n, v in headers if n.lower() not in ("content-type", "content-length")]
        if result.returncode != 0 and not head:
            self.send(500, result.stderr)
            return
        self.send(status, payload, content_type, others)


def main():
    parser = argparse.ArgumentParser()
    for name in ("--cert", "--key", "--aws-access-key-id", "--aws-secret", "--basic", "--git-root"):
        parser.add_argument(name, required=True)
    options = parser.parse_args()
    Handler.options = options
    Handler.wheel = build_wheel()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(options.cert, options.key)
    # The handshake happens in the request's thread, on its first read, not in accept().
    server.socket = context.wrap_socket(
        server.socket, server_side=True, do_handshake_on_connect=False
    )
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
