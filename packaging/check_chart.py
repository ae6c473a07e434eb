"""Render and lint the Helm chart with Helm's own engine, and check what it makes.

Helm itself is not packaged by Debian 12; helm-python-sdk (PyPI) binds Helm's Go SDK, so
`helm lint` and `helm template` run here as they would with the helm binary. Each rendered
manifest is then parsed as YAML and checked for what docs/deploy.md promises: the workload
each store gets, the Secret mounted as a file, the probes, the Services, the security
context. Nothing here talks to a cluster. Run by packaging/check.
"""

import sys
from pathlib import Path

import helm_python
import yaml

CHART = Path(__file__).resolve().parent / "helm" / "agent-vault"
PASSWORD = "a master password for the check"
DATABASE_URL = "postgres://agent_vault:pw@db.internal:5432/agent_vault?sslmode=verify-full"


def render(values):
    chart = helm_python.Chart.load(CHART)
    manifests = chart.render(values, name="av", namespace="vault", is_install=True)
    documents = []
    for path, text in sorted(manifests.items()):
        if not path.endswith(".yaml"):
            continue
        for document in yaml.safe_load_all(text):
            if document is not None:
                assert isinstance(document, dict), f"{path}: not a mapping"
                documents.append(document)
    return documents


def refused(values, needle):
    try:
        render(values)
    except helm_python.HelmError as error:
        assert needle in str(error), f"expected {needle!r} in {error}"
        return
    raise AssertionError(f"{values} rendered; expected a refusal with {needle!r}")


def only(documents, kind, name=None):
    found = [d for d in documents if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


def check_pod(workload, store):
    pod = workload["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] == 10001, security
    (container,) = pod["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }, container["securityContext"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "control"}, probe
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "control": 14321,
        "proxy": 14322,
    }
    args = container["args"]
    file_arg = args[args.index("--master-password-file") + 1]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert file_arg == mounts["master-password"]["mountPath"] + "/master-password", args
    assert mounts["master-password"]["readOnly"] is True
    assert mounts["data"]["mountPath"] == args[args.index("--data-dir") + 1]
    names = [e["name"] for e in container.get("env", [])]
    assert not any("PASSWORD" in n for n in names), f"a password in the environment: {names}"
    volumes = {v["name"]: v for v in pod["volumes"]}
    secret = volumes["master-password"]["secret"]
    assert secret["items"] == [{"key": "master-password", "path": "master-password"}], secret
    if store == "postgres":
        assert "data" in volumes and "emptyDir" in volumes["data"], volumes
        (database,) = [e for e in container["env"] if e["name"] == "DATABASE_URL"]
        return secret["secretName"], database["valueFrom"]["secretKeyRef"]
    assert "data" not in volumes, "the StatefulSet's data is its claim"
    return secret["secretName"], None


def main():
    report = helm_python.lint(CHART, {"masterPassword": {"value": PASSWORD}}, strict=True)
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert not problems, f"helm lint --strict: {problems}"

    # SQLite: one StatefulSet replica on a claim; the chart's own password Secret.
    documents = render({"masterPassword": {"value": PASSWORD}})
    workload = only(documents, "StatefulSet")
    assert not [d for d in documents if d["kind"] == "Deployment"]
    assert workload["spec"]["replicas"] == 1
    (claim,) = workload["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
    secret_name, _ = check_pod(workload, "sqlite")
    secret = only(documents, "Secret", secret_name)
    assert secret["stringData"] == {"master-password": PASSWORD}
    control = only(documents, "Service", "av-agent-vault")
    proxy = only(documents, "Service", "av-agent-vault-proxy")
    assert control["spec"]["ports"][0]["port"] == 14321
    assert proxy["spec"]["ports"][0]["port"] == 14322
    assert workload["spec"]["serviceName"] == "av-agent-vault-headless"
    only(documents, "Service", "av-agent-vault-headless")

    # PostgreSQL: a Deployment of several replicas, both secrets existing ones.
    documents = render(
        {
            "store": "postgres",
            "replicas": 3,
            "masterPassword": {"existingSecret": "vault-password"},
            "database": {"existingSecret": "vault-db"},
            "addr": "https://vault.example.com",
        }
    )
    workload = only(documents, "Deployment")
    assert workload["spec"]["replicas"] == 3
    assert not [d for d in documents if d["kind"] in ("StatefulSet", "Secret")]
    secret_name, database = check_pod(workload, "postgres")
    assert secret_name == "vault-password"
    assert database == {"name": "vault-db", "key": "DATABASE_URL"}, database
    env = workload["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "AGENT_VAULT_ADDR", "value": "https://vault.example.com"} in env

    # PostgreSQL with the URL given: the chart keeps it in a Secret of its own.
    documents = render(
        {"store": "postgres", "masterPassword": {"value": PASSWORD}, "database": {"url": DATABASE_URL}}
    )
    _, database = check_pod(only(documents, "Deployment"), "postgres")
    assert only(documents, "Secret", database["name"])["stringData"] == {"DATABASE_URL": DATABASE_URL}

    # Values that cannot work are refused, saying what to set.
    refused({}, "set masterPassword.existingSecret")
    refused({"store": "postgres", "masterPassword": {"value": PASSWORD}}, "needs database.existingSecret")
    refused({"store": "mysql", "masterPassword": {"value": PASSWORD}}, "store must be sqlite or postgres")
    print(f"helm chart: lint clean; rendered and checked with Helm {helm_python.helm_sdk_version()}")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as error:
        print(f"helm chart check failed: {error}", file=sys.stderr)
        sys.exit(1)
