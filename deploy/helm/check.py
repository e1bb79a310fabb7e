#!/usr/bin/env python3
"""Checks the Tether chart with Helm's own engine, offline.

For every values file in the chart's ci/ folder:
  1. `helm lint --strict` (values.schema.json included) for each Kubernetes version;
  2. render the chart and parse every rendered file as strict YAML, as go-yaml v3 and kyaml
     (kustomize, Argo CD, Flux, yq) do: a duplicate key, a tab in indentation or an alias
     without its anchor is an error (PyYAML, which Helm-adjacent Python tools use, would
     silently keep the last of two keys);
  3. validate every manifest with kubernetes-validate in strict mode against Kubernetes 1.28
     through 1.33 (custom resources such as the ServiceMonitor are checked for their required
     fields only: no schema for them ships offline);
  4. run `tether check-config` on the rendered configuration, with the mounted secrets replaced
     by generated keys and placeholders, so the chart never renders a file Tether refuses.
Then checkov scans the manifests of every values file (as `helm install --namespace auth`
applies them) and fails on any finding but the few CHECKOV_SKIPS give a reason for, and every
broken value in BROKEN must fail, with a message that names the value.

Usage: check.py CHART_DIR TETHER_BINARY
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tempfile

import helm_python as helm
import kubernetes_validate
import yaml
from ruamel.yaml import YAML

KUBE_VERSIONS = ["1.28.0", "1.29.0", "1.30.0", "1.31.0", "1.32.0", "1.33.0"]
SECRET_DIR = "/etc/tether/secrets"
CA_DIR = "/etc/tether/redis-ca"
RELEASE = "tether"
NAMESPACE = "auth"

# Checks of checkov's the chart deliberately does not follow, each with its reason. Every
# other finding fails the check.
CHECKOV_SKIPS = {
    "CKV_K8S_11": "CPU limits: the CFS quota throttles a latency-bound service in bursts even when "
                  "the node is idle; the chart sets CPU requests (scheduling, HPA) and memory limits",
}
# Followed only where the values pin images by digest (ci/production-values.yaml is held to
# them); a tag is the default, because a digest belongs to one published release.
CHECKOV_UNPINNED_SKIPS = {
    "CKV_K8S_43": "image digest: image.digest (and redis.bundled.image.digest) pin it; values "
                  "files without one use a tag",
    "CKV_K8S_15": "pull policy Always: needed only for a mutable tag; a digest-pinned image is "
                  "pulled once per node (IfNotPresent)",
}

# Broken values and a fragment the failure message must contain (the value's name).
BROKEN = [
    ("no issuer", {"issuer": ""}, "issuer"),
    ("http issuer", {"issuer": "http://auth.example.com"}, "issuer"),
    ("replicas as text", {"replicaCount": "two"}, "replicaCount"),
    ("zero replicas", {"replicaCount": 0}, "replicaCount"),
    ("unknown redis mode", {"redis": {"mode": "sidecar"}}, "mode"),
    ("unknown topology", {"redis": {"external": {"topology": "ring"}}}, "topology"),
    ("an unknown record format", {"redis": {"writeSchema": 3}}, "writeSchema"),
    ("password in the redis url", {"redis": {"external": {"url": "redis://u:hunter2@redis:6379"}}}, "redis.external.url"),
    ("no redis url", {"redis": {"external": {"url": ""}}}, "redis.external.url"),
    ("no keys", {"secrets": {"encryptionKeys": ""}}, "secrets.encryptionKeys"),
    ("a secret in config", {"config": {"keys": {"encryption": "k1:AAAA"}}}, "config.keys"),
    ("a provider secret inline", {"providers": {"gh": {"kind": "github", "client_id": "x", "client_secret": "s"}}}, "providers.gh.client_secret"),
    ("a provider without its secret", {"providers": {"gh": {"kind": "github", "client_id": "x"}}}, "secrets.providers.gh"),
    ("an MCP server naming no provider", {"mcpServers": {"r": {"uri": "https://r.example.com/mcp", "provider": "nope"}}, "secrets": {"mcpServers": {"r": "x"}}}, "mcpServers.r.provider"),
    ("a server listen address in config", {"config": {"server": {"bind": "0.0.0.0:1"}}}, "config.server.bind"),
    ("ingress for another host", {"ingress": {"enabled": True, "host": "other.example.com"}}, "ingress.host"),
    ("shutdown longer than the grace period", {"shutdownTimeoutSeconds": 40}, "shutdownDelaySeconds + shutdownTimeoutSeconds"),
    ("delay and shutdown longer than the grace period", {"shutdownDelaySeconds": 15}, "shutdownDelaySeconds"),
    ("environment variable without a name", {"extraEnv": [{"value": "x"}]}, "name"),
    ("memory limit without a unit", {"resources": {"limits": {"memory": "lots"}}}, "memory"),
    ("unknown top-level value", {"replicas": 3}, "replicas"),
    ("an image digest that is not sha256", {"image": {"digest": "latest"}}, "digest"),
    ("the admin API on without a token", {"admin": {"enabled": True}}, "admin.tokens"),
    ("an admin token without its value", {"admin": {"enabled": True, "tokens": {"ops": {"scopes": ["grants:read"]}}}}, "secrets.adminTokens.ops"),
    ("an admin token with an unknown scope", {"admin": {"tokens": {"ops": {"scopes": ["root"]}}}}, "scopes"),
    ("the admin API on the metrics port", {"admin": {"enabled": True, "port": 9090, "tokens": {"ops": {"scopes": ["grants:read"]}}}, "secrets": {"adminTokens": {"ops": "x" * 32}}}, "admin.port"),
]

# Documents a strict parser must refuse: if one of them parses, the strict check itself broke.
NOT_STRICT_YAML = {
    "a duplicate key": "metadata:\n  labels:\n    app: a\n    app: a\n",
    "a tab in indentation": "metadata:\n\tname: a\n",
    "an alias without its anchor": "metadata:\n  labels: *common\n",
}


def deep_merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def render(chart: helm.Chart, values: dict) -> tuple[dict[str, str], list[dict]]:
    """The rendered files (path: text) and their manifests, in the release namespace."""
    chart.validate_schema(values)
    manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    manifests = {path: text for path, text in manifests.items() if not path.endswith("NOTES.txt")}
    docs = []
    for path, text in sorted(manifests.items()):
        for doc in yaml.safe_load_all(text):
            if doc:
                doc.setdefault("metadata", {}).setdefault("namespace", NAMESPACE)
                docs.append(doc)
    return manifests, docs


def strict_parser() -> YAML:
    parser = YAML(typ="safe", pure=True)
    parser.allow_duplicate_keys = False
    return parser


def strict(manifests: dict[str, str]) -> list[str]:
    """Every rendered file as a strict YAML parser reads it."""
    problems = []
    for path, text in sorted(manifests.items()):
        try:
            list(strict_parser().load_all(text))
        except Exception as e:  # ruamel's DuplicateKeyError, ScannerError, ComposerError, ...
            problems.append(f"{path}: not strict YAML: {' '.join(str(e).split())[:400]}")
    return problems


def strict_parser_works() -> list[str]:
    problems = []
    for case, text in NOT_STRICT_YAML.items():
        try:
            list(strict_parser().load_all(text))
            problems.append(f"the strict YAML parser accepted {case}")
        except Exception:
            pass
    return problems


def checkov(scanned: dict[str, tuple[list[dict], bool]], workdir: pathlib.Path) -> dict[str, tuple[int, list[str], list[str]]]:
    """Runs checkov once over the manifests of every values file; per values file, the number
    of checks passed, the findings and the skipped findings. `scanned` maps a values file to
    its manifests and whether it pins images by digest."""
    paths = {}
    for name, (docs, _) in scanned.items():
        path = workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        paths[str(path)] = name
    args = [str(pathlib.Path(sys.executable).with_name("checkov")), "--framework", "kubernetes", "--skip-download",
            "--compact", "--output", "json"]
    for path in paths:
        args += ["--file", path]
    done = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "BC_SKIP_MAPPING": "TRUE"})
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        return {name: (0, [f"checkov did not run: {done.stderr.strip()[-600:]}"], []) for name in scanned}
    reports = report if isinstance(report, list) else [report]
    outcome = {name: (0, [], []) for name in scanned}
    for part in reports:
        results = part.get("results", {})
        for verdict in ("passed_checks", "failed_checks"):
            for check in results.get(verdict, []):
                name = paths.get(str(pathlib.Path(workdir, pathlib.Path(check.get("file_abs_path") or check["file_path"]).name)))
                if name is None:
                    continue
                passed, findings, skipped = outcome[name]
                pinned = scanned[name][1]
                finding = f"checkov {check['check_id']} {check['resource']}: {check['check_name']}"
                if verdict == "passed_checks":
                    passed += 1
                elif check["check_id"] in CHECKOV_SKIPS or (not pinned and check["check_id"] in CHECKOV_UNPINNED_SKIPS):
                    skipped.append(check["check_id"])
                else:
                    findings.append(finding)
                outcome[name] = (passed, findings, skipped)
    return outcome


def lint(chart_dir: pathlib.Path, values: dict) -> list[str]:
    problems = []
    for version in KUBE_VERSIONS:
        report = helm.lint(str(chart_dir), values, strict=True, namespace=NAMESPACE, kube_version=f"v{version}")
        for message in report.get("messages", []):
            if message.get("severity", 0) >= 2:
                problems.append(f"lint (k8s {version}): {message.get('path')}: {message.get('error')}")
        problems += [f"lint (k8s {version}): {e}" for e in report.get("errors") or []]
    return problems


def validate(docs: list[dict]) -> list[str]:
    problems = []
    for doc in docs:
        name = f"{doc.get('kind')}/{doc['metadata'].get('name')}"
        if doc.get("kind") == "Deployment":
            selector = doc["spec"]["selector"].get("matchLabels", {})
            labels = doc["spec"]["template"]["metadata"].get("labels", {})
            if any(labels.get(k) != v for k, v in selector.items()):
                problems.append(f"{name}: the pod template's labels {labels} do not match its selector {selector}")
        if doc.get("apiVersion", "").startswith("monitoring.coreos.com/"):
            if not doc.get("spec", {}).get("endpoints") or not doc["spec"].get("selector"):
                problems.append(f"{name}: a ServiceMonitor needs endpoints and a selector")
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                problems.append(f"{name} (k8s {version}): {e.message} at {'.'.join(map(str, e.path))}")
            except Exception as e:  # an unknown kind or version
                problems.append(f"{name} (k8s {version}): {e}")
    return problems


def check_config(docs: list[dict], tether: str) -> list[str]:
    configmaps = [d for d in docs if d.get("kind") == "ConfigMap" and "tether.json" in d.get("data", {})]
    if len(configmaps) != 1:
        return [f"expected one ConfigMap with tether.json, found {len(configmaps)}"]
    text = configmaps[0]["data"]["tether.json"]
    with tempfile.TemporaryDirectory() as tmp:
        secrets = pathlib.Path(tmp, "secrets")
        secrets.mkdir()
        generated = subprocess.run([tether, "keys", "generate"], capture_output=True, text=True, check=True).stdout
        keys = dict(line.split("=", 1) for line in generated.splitlines() if "=" in line)
        (secrets / "encryption-keys").write_text(keys["TETHER__KEYS__ENCRYPTION"])
        (secrets / "signing-keys").write_text(keys["TETHER__KEYS__SIGNING"])
        ca_dir = pathlib.Path(tmp, "redis-ca")
        ca_dir.mkdir()
        (ca_dir / "ca.crt").write_text(pathlib.Path(__file__).with_name("test-ca.crt").read_text())
        config = json.loads(text.replace(SECRET_DIR, str(secrets)).replace(CA_DIR, str(ca_dir)))
        # Every other mounted file (provider, resource, client and Redis secrets): a placeholder.
        for path in files_named(config):
            if not pathlib.Path(path).exists():
                if not path.startswith(str(secrets)):
                    return [f"the configuration names {path}, which no volume mounts"]
                pathlib.Path(path).write_text("placeholder-secret-value-0123456789abcdef")
        config_path = pathlib.Path(tmp, "tether.json")
        config_path.write_text(json.dumps(config))
        done = subprocess.run([tether, "--config", str(config_path), "check-config"], capture_output=True, text=True)
        if done.returncode != 0:
            return [f"tether check-config refused the rendered configuration:\n{done.stdout}{done.stderr}"]
    return []


def files_named(node) -> list[str]:
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key.endswith("_file") and isinstance(value, str) and value:
                found.append(value)
            else:
                found += files_named(value)
    return found


def pins_images(values: dict) -> bool:
    """Whether the values pin every image the chart runs by digest."""
    redis = values.get("redis", {})
    bundled = redis.get("mode", "bundled") == "bundled"
    redis_pinned = redis.get("bundled", {}).get("image", {}).get("digest")
    return bool(values.get("image", {}).get("digest")) and (not bundled or bool(redis_pinned))


def main() -> int:
    chart_dir = pathlib.Path(sys.argv[1]).resolve()
    tether = sys.argv[2]
    chart = helm.Chart.load(str(chart_dir))
    failures = 0
    for problem in strict_parser_works():
        failures += 1
        print(f"FAIL {problem}")
    base = None
    scanned = {}
    for values_file in sorted((chart_dir / "ci").glob("*-values.yaml")):
        values = yaml.safe_load(values_file.read_text()) or {}
        if values_file.name == "defaults-values.yaml":
            base = values
        try:
            manifests, docs = render(chart, values)
        except helm.HelmError as e:
            print(f"FAIL {values_file.name}: {e}")
            failures += 1
            continue
        problems = lint(chart_dir, values) + strict(manifests) + validate(docs) + check_config(docs, tether)
        scanned[values_file.name] = (docs, pins_images(values))
        kinds = sorted({d["kind"] for d in docs})
        if problems:
            failures += 1
            print(f"FAIL {values_file.name}:")
            for p in problems:
                print(f"  {p}")
        else:
            print(f"ok   {values_file.name}: {len(docs)} manifests ({', '.join(kinds)}) strict YAML, valid on Kubernetes "
                  f"{KUBE_VERSIONS[0]}..{KUBE_VERSIONS[-1]}; Tether accepts the configuration")
    with tempfile.TemporaryDirectory() as workdir:
        for name, (passed, findings, skipped) in checkov(scanned, pathlib.Path(workdir)).items():
            summary = f"checkov {name}: {passed} passed, {len(findings)} failed, {len(skipped)} skipped"
            summary += f" ({', '.join(sorted(set(skipped)))})" if skipped else ""
            if findings or not passed:
                failures += 1
                print(f"FAIL {summary}")
                for finding in findings:
                    print(f"  {finding}")
            else:
                print(f"ok   {summary}")
    if base is None:
        print("FAIL ci/defaults-values.yaml is missing: the broken values are applied on top of it")
        return 1
    for case, override, expected in BROKEN:
        values = deep_merge(base, override)
        try:
            render(chart, values)
        except helm.HelmError as e:
            message = str(e)
            if expected in message:
                print(f"ok   refused {case}: {first_line(message, expected)}")
            else:
                failures += 1
                print(f"FAIL {case}: refused, but the message does not name `{expected}`: {message}")
            continue
        failures += 1
        print(f"FAIL {case}: the chart rendered broken values {override}")
    if failures:
        print(f"chart-check: {failures} failure(s)")
        return 1
    print("chart-check: passed")
    return 0


def first_line(message: str, expected: str) -> str:
    lines = [line.strip() for line in message.splitlines() if expected in line]
    return (lines[0] if lines else message.splitlines()[0])[:200]


if __name__ == "__main__":
    sys.exit(main())
