#!/usr/bin/env python3
"""Render the Temporal server configuration of the Helm chart for the local all-in-one server.

    server-config.py CHART OUT VALUES_FILE... [--secret NAME/KEY=FILE]... [--mount POD_PATH=LOCAL_PATH]...

The chart is rendered by the real Helm engine (helm-python-sdk) with the values files merged in
order (later files win), after validation against values.schema.json. From the result this takes
exactly what a server pod of the release gets and fills in what Kubernetes would provide:

- the server ConfigMap (docker.yaml, dynamic_config.yaml) -> OUT/config/, with every mount path of
  the pod (`--mount`, e.g. /etc/temporal/tls -> the PKI folder) replaced by the local folder;
- the container's environment: `fieldRef status.podIP` is 127.0.0.1, a `secretKeyRef` is read from
  the file given with `--secret NAME/KEY=FILE` -> OUT/server.env (0600, KEY=VALUE lines);
- the `--service` of every server Deployment -> OUT/services (one a line);
- the pod's own network namespace: what the pod binds on 0.0.0.0 is bound on 127.0.0.1 here.

Every substitution must match at least once, so a chart change that moves a path fails loudly
instead of starting a server on the wrong files. Exit 1 with the reason on any failure.
"""
import copy
import os
import pathlib
import sys

import helm_python as helm
import yaml

RELEASE = "temporal"
NAMESPACE = "temporal"


def fail(message: str) -> None:
    print(f"server-config: {message}", file=sys.stderr)
    sys.exit(1)


def merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_args(argv: list[str]):
    positional, secrets, mounts = [], {}, []
    it = iter(argv)
    for arg in it:
        if arg in ("--secret", "--mount"):
            value = next(it, None)
            if value is None or "=" not in value:
                fail(f"{arg} needs NAME=VALUE")
            left, right = value.split("=", 1)
            if arg == "--secret":
                secrets[left] = pathlib.Path(right)
            else:
                mounts.append((left.rstrip("/"), right.rstrip("/")))
        else:
            positional.append(arg)
    if len(positional) < 3:
        fail(__doc__.strip().splitlines()[2].strip())
    return pathlib.Path(positional[0]), pathlib.Path(positional[1]), [pathlib.Path(p) for p in positional[2:]], secrets, mounts


def substitute(text: str, old: str, new: str, what: str) -> str:
    if old not in text:
        fail(f"the rendered {what} no longer contains {old!r}: update scripts/dev-services.d/server-config.py")
    return text.replace(old, new)


def main() -> int:
    chart_dir, out, values_files, secrets, mounts = parse_args(sys.argv[1:])
    values: dict = {}
    for f in values_files:
        values = merge(values, yaml.safe_load(f.read_text()) or {})

    with helm.Chart.load(str(chart_dir)) as chart:
        try:
            chart.validate_schema(values)
            rendered = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
        except Exception as err:  # the SDK raises typed errors; all mean "the values are wrong"
            fail(f"the chart refused the values ({', '.join(map(str, values_files))}): {err}")
    docs = [d for name, text in rendered.items() if not name.endswith("NOTES.txt") for d in yaml.safe_load_all(text) if d]

    config_maps = [d for d in docs if d["kind"] == "ConfigMap" and "docker.yaml" in d.get("data", {})]
    if len(config_maps) != 1:
        fail(f"expected one ConfigMap with docker.yaml in the render, found {len(config_maps)}")
    data = config_maps[0]["data"]

    deployments = [
        d for d in docs
        if d["kind"] == "Deployment" and d["spec"]["template"]["spec"]["containers"][0].get("command") == ["temporal-server"]
    ]
    if not deployments:
        fail("no server Deployment (command temporal-server) in the render")
    services, env = [], {}
    for d in deployments:
        container = d["spec"]["template"]["spec"]["containers"][0]
        args = container.get("args", [])
        services += [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--service"]
        for item in container.get("env", []):
            env[item["name"]] = resolve_env(item, secrets)

    docker_yaml = data["docker.yaml"]
    for pod_path, local_path in mounts:
        docker_yaml = substitute(docker_yaml, pod_path + "/", local_path + "/", "docker.yaml")
    docker_yaml = substitute(docker_yaml, "bindOnIP: 0.0.0.0", "bindOnIP: 127.0.0.1", "docker.yaml")
    docker_yaml = substitute(docker_yaml, 'listenAddress: "0.0.0.0:', 'listenAddress: "127.0.0.1:', "docker.yaml")

    config_dir = out / "config"
    config_dir.mkdir(parents=True, exist_ok=True)
    write(config_dir / "docker.yaml", docker_yaml, 0o644)
    write(out / "dynamic_config.yaml", data.get("dynamic_config.yaml", "{}\n"), 0o644)
    write(out / "services", "".join(f"{s}\n" for s in services), 0o644)
    write(out / "server.env", "".join(f"{k}={v}\n" for k, v in sorted(env.items())), 0o600)
    print(f"server-config: {len(services)} services ({', '.join(services)}) from {len(deployments)} Deployments -> {out}")
    return 0


def resolve_env(item: dict, secrets: dict) -> str:
    if "value" in item:
        return str(item["value"])
    source = item.get("valueFrom", {})
    if source.get("fieldRef", {}).get("fieldPath") == "status.podIP":
        return "127.0.0.1"
    ref = source.get("secretKeyRef")
    if ref:
        key = f"{ref['name']}/{ref['key']}"
        if key not in secrets:
            fail(f"the server reads Secret {key} (env {item['name']}): pass --secret {key}=FILE")
        return secrets[key].read_text().strip()
    fail(f"env {item['name']} of the server has a source this script cannot fill in: {source}")
    return ""


def write(path: pathlib.Path, text: str, mode: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
