#!/usr/bin/env python3
"""The real Temporal server runs the configuration the chart renders for production.

Run by scripts/checks/server-loads-chart with the local stack up (scripts/dev-services env). The
values are ci/bootstrap-values.yaml (`render helm-values -f examples/production.yaml`) and the
operator's file, with only what one machine changes on top (server-local-values.yaml: loopback
ports, the stack's PostgreSQL without TLS and its OpenSearch over http, a JWKS served here). Then:

  1. the chart's platform.yaml (its ConfigMap) drives `temporal-bootstrap apply --only
     certificates,persistence,visibility` into fresh databases and a fresh index: the PKI for the
     chart's own service names, the schema;
  2. scripts/dev-services.d/server-config.py turns the chart's server ConfigMap and pod env into
     files, and the release's temporal-server starts every service the Deployments run;
  3. authorization (server.authorization, Temporal's default authorizer and JWT claim mapper, the
     JWKS signed here): the bootstrap with its temporal-system:admin token registers the
     production namespaces and search attributes and a re-run changes nothing; a token with only
     a namespace read permission, and no token at all, are refused by the server.

Exits 1 on any failure; prints the server's log tail when it does not start.
"""
import base64
import datetime
import http.server
import ipaddress
import json
import os
import pathlib
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time

import helm_python as helm
import jwt
import yaml

from checks import Checks, converged, merge
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

REPO = pathlib.Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "temporal-platform"
WORK = REPO / ".local" / "chart-server"
BOOTSTRAP = os.environ["TB_BOOTSTRAP_BIN"]
# The release the production values name (server.version), built by scripts/test like the other
# releases of the upgrade tests: its own server binary and schema folder.
RELEASES = pathlib.Path(os.environ["TB_TEMPORAL_RELEASES_DIR"])
DATABASE, VIS_INDEX = "temporal_chartcheck", "temporal_visibility_v1_chartcheck"
check = Checks("server-loads-chart")


def free_port(below: int = 65536) -> int:
    """Membership ports stay below 32768 (Temporal stores them in a smallint column)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0 if below == 65536 else 20000 + int.from_bytes(os.urandom(2)) % 12000))
            port = s.getsockname()[1]
            if port < below:
                return port


# ------------------------------------------------------------------------------ JWKS + tokens
class Issuer:
    """An identity provider in miniature: an RSA key, its JWKS over https (a self-signed
    certificate the server trusts through SSL_CERT_FILE, as Go reads it), signed tokens."""

    def __init__(self, workdir: pathlib.Path):
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        numbers = self.key.public_key().public_numbers()

        def b64(n: int) -> str:
            return base64.urlsafe_b64encode(n.to_bytes((n.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()

        jwks = json.dumps({"keys": [{"kty": "RSA", "kid": "chartcheck", "use": "sig", "alg": "RS256",
                                      "n": b64(numbers.n), "e": b64(numbers.e)}]}).encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(jwks)

            def log_message(self, *args):
                pass

        self.ca_file, key_file = workdir / "jwks-ca.pem", workdir / "jwks-key.pem"
        tls_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "chartcheck jwks")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(tls_key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(hours=2))
                .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(tls_key, hashes.SHA256()))
        self.ca_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(tls_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
        key_file.chmod(0o600)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.ca_file, key_file)
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"

    def token(self, permissions: list[str]) -> str:
        now = int(time.time())
        claims = {"sub": "chartcheck", "iat": now, "exp": now + 3600, "permissions": permissions}
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": "chartcheck"})


# ------------------------------------------------------------------------------ the render

def local_values(issuer: Issuer) -> tuple[dict, dict]:
    ports = {name: {"grpc": free_port(), "membership": free_port(32768)}
             for name in ("frontend", "internalFrontend", "history", "matching", "worker")}
    for name in ("frontend", "internalFrontend"):
        ports[name]["http"] = free_port()
    ports["metrics"] = free_port()
    overlay = {
        "fullnameOverride": "temporal",
        "server": {"logLevel": "warn", "ports": ports, "authorization": {"jwtKeySources": [issuer.url]}},
        "persistence": {"postgres": {"host": os.environ["TB_PG_HOST"], "port": int(os.environ["TB_PG_PORT"]),
                                     "database": DATABASE, "tls": {"mode": "disable"}, "maxConns": 10, "maxIdleConns": 5}},
        "visibility": {"elasticsearch": {"url": os.environ["TB_OPENSEARCH_URL"], "index": VIS_INDEX,
                                         "tls": {"caSecret": ""}}},
    }
    return overlay, ports


def render(values: dict) -> list[dict]:
    with helm.Chart.load(str(CHART)) as chart:
        chart.validate_schema(values)
        out = chart.render(values, name="temporal", namespace="temporal", is_install=True)
    return [d for name, text in out.items() if not name.endswith("NOTES.txt") for d in yaml.safe_load_all(text) if d]


def bootstrap_platform(docs: list[dict], frontend_port: int, token_file: pathlib.Path | None) -> dict:
    """The chart's platform.yaml with what the pod would mount replaced by local files."""
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "temporal-platform")
    p = yaml.safe_load(cm["data"]["platform.yaml"])
    pki = WORK / "pki"
    fe = p["cluster"]["frontend"]
    fe["address"] = f"127.0.0.1:{frontend_port}"
    fe.pop("http_address", None)
    fe["tls"].update({"ca": str(pki / "ca-bundle.pem"), "cert": str(pki / "clients" / "temporal-bootstrap.pem"),
                      "key": str(pki / "clients" / "temporal-bootstrap-key.pem")})
    if token_file is None:
        p["cluster"].pop("authorization", None)
    else:
        p["cluster"]["authorization"]["token"] = f"file:{token_file}"
    pg = p["persistence"]["postgres"]
    schema = RELEASES / p["cluster"]["temporal_version"] / "schema"
    pg.update({"password": "env:TEMPORAL_DB_PASSWORD", "tls": {"mode": "disable"},
               "schema_dir": str(schema / "postgresql" / "v12")})
    pg["admin"].update({"user": os.environ["TB_PG_ADMIN_USER"], "password": "env:TB_PG_ADMIN_PASSWORD"})
    es = p["visibility"]["elasticsearch"]
    es.pop("auth", None)
    es.pop("ca", None)
    es["schema_dir"] = str(schema / "elasticsearch")
    p["pki"]["dir"] = str(pki)
    p["pki"].pop("kubernetes_secrets", None)
    p.pop("observability", None)  # Grafana and Prometheus are not this check's subject
    return p


def bootstrap(platform: dict, name: str, only: str) -> subprocess.CompletedProcess:
    cfg = WORK / name
    cfg.write_text(yaml.safe_dump(platform))
    return subprocess.run([BOOTSTRAP, "--output", "json", "apply", "--only", only, "-f", str(cfg)],
                          capture_output=True, text=True, timeout=300)


def drop_previous_run():
    admin = f"postgresql://{os.environ['TB_PG_ADMIN_USER']}@{os.environ['TB_PG_HOST']}:{os.environ['TB_PG_PORT']}/postgres"
    env = {**os.environ, "PGPASSWORD": os.environ["TB_PG_ADMIN_PASSWORD"]}
    for db in (DATABASE, f"{DATABASE}_visibility"):
        subprocess.run(["psql", admin, "-qc", f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'], env=env, check=True,
                       capture_output=True)
    subprocess.run(["curl", "-s", "-o", "/dev/null", "-X", "DELETE", f"{os.environ['TB_OPENSEARCH_URL']}/{VIS_INDEX}"])
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    WORK.chmod(0o700)


def main() -> int:
    drop_previous_run()
    issuer = Issuer(WORK)
    ci = CHART / "ci"
    values = merge(yaml.safe_load((ci / "bootstrap-values.yaml").read_text()), yaml.safe_load((ci / "_operator.yaml").read_text()))
    check(values["server"]["authorization"]["enabled"] is True, "the production render turns authorization on")
    overlay, ports = local_values(issuer)
    (WORK / "local-values.yaml").write_text(yaml.safe_dump(overlay))
    values = merge(values, overlay)
    docs = render(values)
    admin_token, reader_token = WORK / "admin.jwt", WORK / "reader.jwt"
    admin_token.write_text(issuer.token(["temporal-system:admin"]))
    reader_token.write_text(issuer.token(["payments:read"]))
    platform = bootstrap_platform(docs, ports["frontend"]["grpc"], admin_token)
    os.environ.setdefault("TEMPORAL_DB_PASSWORD", os.environ.get("TEMPORAL_DB_PASSWORD", ""))

    first = bootstrap(platform, "platform.yaml", "certificates,persistence,visibility")
    if not check(first.returncode == 0, "the chart's platform.yaml: certificates (the chart's service names), schema, index",
                 first.stderr[-1500:]):
        return 1
    # The pod's certificate mounts, from the PKI just issued.
    pki = WORK / "pki"
    for part in ("frontend", "internode"):
        d = WORK / "tls" / part
        d.mkdir(parents=True)
        (d / "tls.crt").symlink_to(pki / f"{part}.pem")
        (d / "tls.key").symlink_to(pki / f"{part}-key.pem")
        (d / "ca.crt").symlink_to(pki / "ca-bundle.pem")
    secrets = WORK / "secrets"
    secrets.mkdir(mode=0o700)
    (secrets / "pg").write_text(os.environ["TEMPORAL_DB_PASSWORD"])
    (secrets / "es").write_text("unused-by-the-local-opensearch")
    full_values = WORK / "values.yaml"
    full_values.write_text(yaml.safe_dump(values))
    names = yaml.safe_load((CHART / "secret-names.yaml").read_text())
    render_cmd = [sys.executable, str(REPO / "scripts/dev-services.d/server-config.py"), str(CHART), str(WORK), str(full_values),
                  "--secret", f"{names['postgres']}/password={secrets / 'pg'}",
                  "--secret", f"{names['elasticsearch']}/password={secrets / 'es'}",
                  "--mount", f"/etc/temporal/tls={WORK / 'tls'}",
                  "--mount", f"/etc/temporal/dynamicconfig={WORK}"]
    rendered = subprocess.run(render_cmd, capture_output=True, text=True)
    if not check(rendered.returncode == 0, "server-config.py: the chart's server ConfigMap and pod env as files",
                 rendered.stderr[-800:]):
        return 1
    services = (WORK / "services").read_text().split()
    env = dict(os.environ, SSL_CERT_FILE=str(issuer.ca_file))
    for line in (WORK / "server.env").read_text().splitlines():
        k, v = line.split("=", 1)
        env[k] = v
    check("TEMPORAL_ALLOW_NO_AUTH" not in (WORK / "server.env").read_text(), "no TEMPORAL_ALLOW_NO_AUTH with an authorizer")
    release = values["server"]["version"]
    binary = RELEASES / release / "bin" / "temporal-server"
    if not check(binary.exists(), f"Temporal {release} (server.version) is built", f"{binary}: TB_TEMPORAL_VERSION={release} scripts/dev-services build-release"):
        return 1
    log = open(WORK / "server.log", "w")
    server = subprocess.Popen([str(binary), "--root", "/", "--config", str(WORK / "config"), "--env", "docker", "start",
                               *[f"--service={s}" for s in services]], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        return run_checks(server, platform, services, admin_token, reader_token)
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def run_checks(server, platform, services, admin_token, reader_token) -> int:
    deadline = time.time() + 180
    up = None
    while time.time() < deadline and server.poll() is None:
        up = bootstrap(platform, "platform.yaml", "cluster")
        if up.returncode == 0:
            break
        time.sleep(3)
    ok = check(server.poll() is None and up is not None and up.returncode == 0,
               f"temporal-server ({', '.join(services)}) runs the chart's production configuration",
               (up.stderr[-800:] if up else "") + "\n" + (WORK / "server.log").read_text()[-2500:])
    if not ok:
        return 1
    # On a cluster started seconds ago the system worker that runs AddSearchAttributes may not be
    # polling yet, and the step reports the attribute "not visible 30s after ... re-run apply" (seen
    # once in four runs here). The daemon re-runs on its interval; this check re-runs at most twice.
    for attempt in range(1, 4):
        applied = bootstrap(platform, "platform.yaml", "cluster,namespaces,search-attributes")
        if applied.returncode == 0 or "not visible" not in applied.stdout:
            break
        print(f"  attempt {attempt}: an attribute was not visible yet (cold system worker); re-running")
    check(applied.returncode == 0, "with its temporal-system:admin token the bootstrap registers the namespaces and attributes",
          (applied.stdout + applied.stderr)[-2500:])
    again = bootstrap(platform, "platform.yaml", "cluster,namespaces,search-attributes")
    check(converged(again, 3),
          "a re-run with the token changes nothing", (again.stdout + again.stderr)[-800:])
    extra = dict(platform)
    extra["namespaces"] = platform["namespaces"] + [dict(platform["namespaces"][0], name="chartcheck-extra")]
    extra["cluster"] = dict(platform["cluster"], authorization=dict(platform["cluster"]["authorization"], token=f"file:{reader_token}"))
    reader = bootstrap(extra, "reader.yaml", "namespaces")
    check(reader.returncode != 0 and "PermissionDenied" in reader.stdout + reader.stderr,
          "a token with only payments:read is refused by the server's authorizer", (reader.stdout + reader.stderr)[-800:])
    anonymous = bootstrap(bootstrap_platform_without_token(platform), "anonymous.yaml", "namespaces")
    check(anonymous.returncode != 0 and "PermissionDenied" in anonymous.stdout + anonymous.stderr,
          "no token at all is refused (a valid client certificate is not enough)", (anonymous.stdout + anonymous.stderr)[-800:])
    return check.summary()


def bootstrap_platform_without_token(platform: dict) -> dict:
    p = json.loads(json.dumps(platform))
    p["cluster"].pop("authorization")
    return p


if __name__ == "__main__":
    sys.exit(main())
