# -*- test-case-name: tests.test_deploy -*-
"""
The Kubernetes manifests in C{deploy/kubernetes/} stay deployable.

There is no cluster here, and C{kubectl create --dry-run=client} needs one
(it asks the server's discovery which kinds exist).  Instead every built-in
object is decoded with the official C{kubernetes} client's models and must
come back unchanged, so a misspelled or misplaced field fails; the objects
are checked against each other (service account, bindings, Service, pod
labels and ports, APIServices, probes); the server's arguments are parsed by
wardled's own L{wardled.tap.Options}; the Flunder example is decoded by
wardled's own decoder; and C{kubectl kustomize} (which works offline) builds
both the directory and the overlay that README.rst gives for the serving
certificate.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from kubernetes import client as kubernetes_client

from tests.harness import KUBECTL
from wardled import certs
from wardled.apis.validation import validate_object_meta
from wardled.apis.wardle import FLUNDERS, validate_flunder
from wardled.tap import Options

Document = dict[str, Any]

REPOSITORY = Path(__file__).resolve().parent.parent
DEPLOY = REPOSITORY / "deploy" / "kubernetes"
KUSTOMIZATION = "kustomization.yaml"
FLUNDER_EXAMPLE = "flunder-example.yaml"
NAMESPACE = "wardle"
GROUP = "wardle.example.com"
SERVICE_HOST = "api.wardle.svc"
SERVER_CONTAINER = "wardle-server"
SERVING_SECRET = "wardle-serving-cert"

# (apiVersion, kind) of every built-in object the directory may hold, and
# the kubernetes client model that describes it.  A kind not listed here
# fails the tests until it is added.
MODELS = {
    ("v1", "Namespace"): "V1Namespace",
    ("v1", "ServiceAccount"): "V1ServiceAccount",
    ("v1", "Service"): "V1Service",
    ("v1", "Secret"): "V1Secret",
    ("apps/v1", "Deployment"): "V1Deployment",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "V1ClusterRole",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "V1ClusterRoleBinding",
    ("rbac.authorization.k8s.io/v1", "Role"): "V1Role",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "V1RoleBinding",
    ("apiregistration.k8s.io/v1", "APIService"): "V1APIService",
}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "APIService"}

# Roles that kube-apiserver bootstraps: (kind, namespace, name).
BUILT_IN_ROLES = {
    ("ClusterRole", "", "system:auth-delegator"),
    ("Role", "kube-system", "extension-apiserver-authentication-reader"),
}

# The overlay README.rst ("Running behind kube-apiserver") tells users to
# write next to their certificates; BASE is the path of deploy/kubernetes.
OVERLAY = """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- {base}
secretGenerator:
- name: wardle-serving-cert
  namespace: wardle
  type: kubernetes.io/tls
  files:
  - tls.crt=certs/server.crt
  - tls.key=certs/server.key
  - ca.crt=certs/ca.crt
replacements:
- source:
    kind: Secret
    name: wardle-serving-cert
    fieldPath: data.[ca.crt]
  targets:
  - select:
      kind: APIService
    fieldPaths:
    - spec.caBundle
"""


# Loading -------------------------------------------------------------------


def manifest_files() -> list[Path]:
    """
    Every YAML file of the directory except the kustomization.
    """
    return sorted(p for p in DEPLOY.glob("*.yaml") if p.name != KUSTOMIZATION)


def load_documents(path: Path) -> list[Document]:
    """
    The non-empty YAML documents of C{path}.
    """
    with path.open() as source:
        return [doc for doc in yaml.safe_load_all(source) if doc is not None]


def deployed_documents() -> list[Document]:
    """
    Every object C{kubectl apply -k deploy/kubernetes/} creates, in file
    order.
    """
    return [
        doc
        for path in manifest_files()
        if path.name != FLUNDER_EXAMPLE
        for doc in load_documents(path)
    ]


def find(documents: list[Document], kind: str, name: str | None = None) -> Document:
    """
    The one document of C{kind} (and C{name}, if given).
    """
    found = [
        doc
        for doc in documents
        if doc["kind"] == kind and name in (None, doc["metadata"]["name"])
    ]
    assert len(found) == 1, (kind, name, [d["metadata"]["name"] for d in found])
    return found[0]


def containers(deployment: Document) -> dict[str, Document]:
    """
    The pod template's containers by name.
    """
    return {c["name"]: c for c in deployment["spec"]["template"]["spec"]["containers"]}


def server_container() -> Document:
    return containers(find(deployed_documents(), "Deployment"))[SERVER_CONTAINER]


def flag_values(arguments: list[str], flag: str) -> list[str]:
    """
    The values of C{--flag=value} arguments.
    """
    prefix = f"--{flag}="
    return [each[len(prefix):] for each in arguments if each.startswith(prefix)]


def round_trip(document: Document) -> Any:
    """
    C{document} decoded into its kubernetes client model and encoded again.
    """
    model = MODELS[(document["apiVersion"], document["kind"])]
    api = kubernetes_client.ApiClient()
    decoded = api.deserialize(json.dumps(document), model, None)
    return api.sanitize_for_serialization(decoded)


def kustomize(directory: Path) -> list[Document]:
    """
    What C{kubectl kustomize DIRECTORY} builds (offline).
    """
    result = subprocess.run(
        [KUBECTL, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc is not None]


def identity(document: Document) -> tuple[str, str, str, str]:
    metadata = document["metadata"]
    return (
        document["apiVersion"],
        document["kind"],
        metadata.get("namespace", ""),
        metadata["name"],
    )


def strict_pem_bundle(value: str) -> list[x509.Certificate]:
    """
    The certificates of a C{caBundle} as committed: plain base64, no line
    breaks, of PEM certificates.
    """
    return x509.load_pem_x509_certificates(base64.b64decode(value, validate=True))


# Every file ------------------------------------------------------------------


def test_directory_has_the_manifests() -> None:
    """
    The files the README and the kustomization name are there, and the
    serving key is not.
    """
    names = {p.name for p in DEPLOY.iterdir()}
    assert {
        "namespace.yaml",
        "serviceaccount.yaml",
        "auth-delegator.yaml",
        "auth-reader.yaml",
        "rbac.yaml",
        "deployment.yaml",
        "service.yaml",
        "apiservice-v1alpha1.yaml",
        "apiservice-v1beta1.yaml",
        FLUNDER_EXAMPLE,
        KUSTOMIZATION,
        "Dockerfile",
    } <= names
    assert not any(
        doc["kind"] == "Secret"
        for path in manifest_files()
        for doc in load_documents(path)
    )


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: p.name)
def test_documents_are_objects(path: Path) -> None:
    """
    Every document of every file is an object with apiVersion, kind and a
    name.
    """
    documents = load_documents(path)
    assert documents
    for document in documents:
        assert isinstance(document["apiVersion"], str)
        assert isinstance(document["kind"], str)
        assert isinstance(document["metadata"]["name"], str)


@pytest.mark.parametrize(
    "path",
    [p for p in manifest_files() if p.name != FLUNDER_EXAMPLE],
    ids=lambda p: p.name,
)
def test_built_in_objects_survive_the_client_models(path: Path) -> None:
    """
    Each object decodes into the kubernetes client's model of its kind and
    encodes back to the same document: every field exists, is where it
    belongs and has the right type.
    """
    for document in load_documents(path):
        assert (document["apiVersion"], document["kind"]) in MODELS
        assert round_trip(document) == document


def test_round_trip_catches_a_misspelled_field() -> None:
    """
    The round trip drops what the model does not know, so a typo shows.
    """
    deployment = find(deployed_documents(), "Deployment")
    broken = json.loads(json.dumps(deployment))
    container = broken["spec"]["template"]["spec"]["containers"][0]
    container["imagePulPolicy"] = container.pop("imagePullPolicy")
    assert round_trip(broken) != broken


def test_namespaces() -> None:
    """
    Namespaced objects live in C{wardle} (the auth reader binding in
    C{kube-system}, next to the ConfigMap it opens); cluster-scoped ones
    have no namespace.
    """
    documents = deployed_documents()
    find(documents, "Namespace", NAMESPACE)
    for document in documents:
        namespace = document["metadata"].get("namespace")
        if document["kind"] in CLUSTER_SCOPED:
            assert namespace is None, identity(document)
        elif document["kind"] == "RoleBinding":
            assert namespace == "kube-system", identity(document)
        else:
            assert namespace == NAMESPACE, identity(document)


# Identity and RBAC -------------------------------------------------------


def service_account_subject() -> Document:
    account = find(deployed_documents(), "ServiceAccount")
    return {
        "kind": "ServiceAccount",
        "name": account["metadata"]["name"],
        "namespace": account["metadata"]["namespace"],
    }


def test_pod_runs_as_the_service_account() -> None:
    deployment = find(deployed_documents(), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    subject = service_account_subject()
    assert pod["serviceAccountName"] == subject["name"] == "apiserver"
    assert deployment["metadata"]["namespace"] == subject["namespace"]
    assert pod.get("automountServiceAccountToken", True) is True
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["kubectl.kubernetes.io/default-container"] == SERVER_CONTAINER


def test_bindings_bind_the_service_account_to_existing_roles() -> None:
    """
    Every binding's only subject is wardled's service account, and its role
    is either defined here or one kube-apiserver bootstraps.
    """
    documents = deployed_documents()
    defined = {
        (doc["kind"], doc["metadata"].get("namespace", ""), doc["metadata"]["name"])
        for doc in documents
        if doc["kind"] in ("ClusterRole", "Role")
    }
    binding_kinds = ("ClusterRoleBinding", "RoleBinding")
    bindings = [d for d in documents if d["kind"] in binding_kinds]
    assert len(bindings) == 3
    for binding in bindings:
        assert binding["subjects"] == [service_account_subject()], identity(binding)
        role = binding["roleRef"]
        namespace = binding["metadata"]["namespace"] if role["kind"] == "Role" else ""
        assert role["apiGroup"] == "rbac.authorization.k8s.io"
        assert (role["kind"], namespace, role["name"]) in defined | BUILT_IN_ROLES


def test_delegation_bindings() -> None:
    """
    The two bindings every aggregated API server needs: TokenReview and
    SubjectAccessReview, and reading extension-apiserver-authentication.
    """
    documents = deployed_documents()
    delegator = find(documents, "ClusterRoleBinding", "wardle:system:auth-delegator")
    assert delegator["roleRef"]["name"] == "system:auth-delegator"
    reader = find(documents, "RoleBinding", "wardle-auth-reader")
    assert reader["metadata"]["namespace"] == "kube-system"
    assert reader["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "extension-apiserver-authentication-reader",
    }


def test_service_account_may_watch_namespaces() -> None:
    """
    NamespaceLifecycle needs get, list and watch on core namespaces through
    a ClusterRole bound to the service account.
    """
    documents = deployed_documents()
    bound = {
        doc["roleRef"]["name"]
        for doc in documents
        if doc["kind"] == "ClusterRoleBinding"
    }
    granted = {
        verb
        for doc in documents
        if doc["kind"] == "ClusterRole" and doc["metadata"]["name"] in bound
        for rule in doc["rules"]
        if "" in rule["apiGroups"] and "namespaces" in rule["resources"]
        for verb in rule["verbs"]
    }
    assert {"get", "list", "watch"} <= granted


def test_user_roles_aggregate_into_the_default_roles() -> None:
    documents = deployed_documents()
    editor = find(documents, "ClusterRole", "wardle:flunder-editor")
    labels = editor["metadata"]["labels"]
    assert labels["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert labels["rbac.authorization.k8s.io/aggregate-to-admin"] == "true"
    viewer = find(documents, "ClusterRole", "wardle:flunder-viewer")
    assert viewer["metadata"]["labels"] == {
        "rbac.authorization.k8s.io/aggregate-to-view": "true"
    }
    for role in (editor, viewer):
        assert [rule["apiGroups"] for rule in role["rules"]] == [[GROUP]]


# Deployment, Service and probes ---------------------------------------------


def container_port(container: Document, port: int | str) -> int:
    """
    The container port a probe or Service names (by name or number).
    """
    for each in container["ports"]:
        if port in (each["containerPort"], each.get("name")):
            return int(each["containerPort"])
    raise AssertionError(f"{container['name']} has no port {port!r}")


def test_service_selects_the_pod() -> None:
    documents = deployed_documents()
    deployment = find(documents, "Deployment", "wardle-server")
    service = find(documents, "Service", "api")
    template_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = service["spec"]["selector"]
    assert selector == {"apiserver": "true"}
    assert selector.items() <= template_labels.items()
    match_labels = deployment["spec"]["selector"]["matchLabels"]
    assert match_labels.items() <= template_labels.items()
    assert deployment["spec"]["replicas"] == 1
    [port] = service["spec"]["ports"]
    assert port["port"] == 443
    server = containers(deployment)[SERVER_CONTAINER]
    assert container_port(server, port["targetPort"]) == 8443


def test_probes_hit_health_over_https() -> None:
    container = server_container()
    secure_port = int(flag_values(container["args"], "secure-port")[0])
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/livez")):
        get = container[probe]["httpGet"]
        assert get["path"] == path
        assert get["scheme"] == "HTTPS"
        assert container_port(container, get["port"]) == secure_port


def test_containers_are_locked_down() -> None:
    """
    Non-root, no privilege escalation, read-only root file system, no
    capabilities, resource requests.
    """
    deployment = find(deployed_documents(), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    for container in containers(deployment).values():
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"]["drop"] == ["ALL"]
        assert container["resources"]["requests"].keys() >= {"cpu", "memory"}


def test_serving_cert_comes_from_the_tls_secret() -> None:
    """
    C{--tls-cert-file}/C{--tls-private-key-file} are the C{tls.crt} and
    C{tls.key} keys of the kubernetes.io/tls Secret, mounted read-only.
    """
    deployment = find(deployed_documents(), "Deployment")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    container = server_container()
    [mount] = [
        m
        for m in container["volumeMounts"]
        if volumes[m["name"]].get("secret", {}).get("secretName") == SERVING_SECRET
    ]
    assert mount["readOnly"] is True
    directory = mount["mountPath"].rstrip("/")
    args = container["args"]
    assert flag_values(args, "tls-cert-file") == [f"{directory}/tls.crt"]
    assert flag_values(args, "tls-private-key-file") == [f"{directory}/tls.key"]


def local_arguments(container: Document, volumes: Path) -> list[str]:
    """
    The container's arguments with every mounted path moved under
    C{volumes}/<volume name>.
    """
    local = {
        mount["mountPath"].rstrip("/") + "/": f"{volumes / mount['name']}/"
        for mount in container.get("volumeMounts", ())
    }
    # One pass, longest mount first, so a local path is never moved again.
    pattern = re.compile("|".join(map(re.escape, sorted(local, key=len, reverse=True))))
    return [
        pattern.sub(lambda match: local[match.group(0)], argument)
        for argument in container["args"]
    ]


def write_serving_secret(directory: Path) -> certs.KeyPair:
    """
    Write what the kubernetes.io/tls Secret holds (C{tls.crt}, C{tls.key})
    for C{api.wardle.svc}, signed by a new CA, which is returned.
    """
    ca = certs.make_ca("test-deploy-ca")
    serving = certs.make_serving_cert(ca, [SERVICE_HOST])
    certs.write_key_pair(
        serving, str(directory / "tls.crt"), str(directory / "tls.key")
    )
    return ca


def test_arguments_are_wardled_flags(tmp_path: Path) -> None:
    """
    wardled's own option parser accepts the arguments (with the Secret's
    files at the mounted paths), so a misspelled flag or value fails here
    rather than in a crash-looping pod.
    """
    container = server_container()
    write_serving_secret(tmp_path / "serving-cert")
    options = Options()
    try:
        options.parseOptions(local_arguments(container, tmp_path))
    except SystemExit as error:
        pytest.fail(f"wardled refuses the Deployment's arguments: {error}")
    config = options.config
    assert config.secure_port == container_port(container, "https")
    assert config.tls_cert_file == str(tmp_path / "serving-cert" / "tls.crt")
    assert not any("kubeconfig" in argument for argument in container["args"])


def test_a_misspelled_flag_is_refused(tmp_path: Path) -> None:
    """
    The parser the test above relies on does refuse an unknown flag.
    """
    container = dict(server_container())
    container["args"] = [*container["args"], "--etcd-severs=http://127.0.0.1:2379"]
    write_serving_secret(tmp_path / "serving-cert")
    with pytest.raises(SystemExit) as raised:
        Options().parseOptions(local_arguments(container, tmp_path))
    assert "etcd-severs" in str(raised.value)


def test_command_is_the_image_entrypoint() -> None:
    """
    The Deployment runs what the Dockerfile's ENTRYPOINT runs.
    """
    lines = (DEPLOY / "Dockerfile").read_text().splitlines()
    [entrypoint] = [line for line in lines if line.startswith("ENTRYPOINT ")]
    command = server_container()["command"]
    assert json.loads(entrypoint.removeprefix("ENTRYPOINT ")) == command
    assert command == ["twistd", "-n", "--pidfile=", "wardled"]
    copied = [
        part
        for line in lines
        if line.startswith("COPY ")
        for part in line.split()[1:-1]
    ]
    assert copied
    for source in copied:
        assert (REPOSITORY / source).exists(), source


def test_etcd_sidecar_serves_the_etcd_servers_flag() -> None:
    deployment = find(deployed_documents(), "Deployment")
    etcd = containers(deployment)["etcd"]
    assert etcd["image"].startswith("registry.k8s.io/etcd:")
    servers = flag_values(server_container()["args"], "etcd-servers")
    assert servers == flag_values(etcd["command"], "advertise-client-urls")
    assert servers == flag_values(etcd["command"], "listen-client-urls")
    [data_dir] = flag_values(etcd["command"], "data-dir")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    [mount] = [m for m in etcd["volumeMounts"] if m["mountPath"] == data_dir]
    assert volumes[mount["name"]] == {"name": mount["name"], "emptyDir": {}}


# APIServices ---------------------------------------------------------------


def api_services(documents: list[Document]) -> dict[str, Document]:
    """
    The APIServices by version.
    """
    return {d["spec"]["version"]: d for d in documents if d["kind"] == "APIService"}


def test_api_services_point_at_the_service() -> None:
    documents = deployed_documents()
    service = find(documents, "Service", "api")
    services = api_services(documents)
    assert set(services) == {"v1alpha1", "v1beta1"}
    for version, api_service in services.items():
        spec = api_service["spec"]
        assert api_service["metadata"]["name"] == f"{version}.{GROUP}"
        assert spec["group"] == GROUP
        assert spec["service"] == {
            "namespace": service["metadata"]["namespace"],
            "name": service["metadata"]["name"],
            "port": service["spec"]["ports"][0]["port"],
        }
        assert spec["groupPriorityMinimum"] == 1000
        assert "insecureSkipTLSVerify" not in spec
    assert (
        services["v1beta1"]["spec"]["versionPriority"]
        > services["v1alpha1"]["spec"]["versionPriority"]
    )


def test_ca_bundle_is_a_certificate() -> None:
    """
    The committed caBundle is base64 of a PEM certificate, the same in both
    APIServices (one Service, one serving certificate).
    """
    services = api_services(deployed_documents())
    bundles = {s["spec"]["caBundle"] for s in services.values()}
    assert len(bundles) == 1
    [certificate] = strict_pem_bundle(bundles.pop())
    constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.value.ca is True


# Kustomize -----------------------------------------------------------------


def test_kustomization_lists_every_manifest() -> None:
    document = load_documents(DEPLOY / KUSTOMIZATION)[0]
    resources = document["resources"]
    assert len(resources) == len(set(resources))
    expected = {p.name for p in manifest_files()} - {FLUNDER_EXAMPLE}
    assert set(resources) == expected


def test_kustomize_builds_the_files_unchanged() -> None:
    built = kustomize(DEPLOY)
    assert sorted(built, key=identity) == sorted(deployed_documents(), key=identity)


@pytest.fixture
def overlay(tmp_path: Path) -> Iterator[Path]:
    """
    The README's overlay, with C{wardled-certs init} files for
    C{api.wardle.svc} in C{certs/}.
    """
    directory = tmp_path / "kube"
    certs.init_directory(str(directory / "certs"), sans=[SERVICE_HOST])
    base = os.path.relpath(DEPLOY, directory)
    (directory / "kustomization.yaml").write_text(OVERLAY.format(base=base))
    yield directory


def unwrapped_base64(value: str) -> bytes:
    """
    Decode base64 as Go's decoder does for C{[]byte} fields: line breaks
    (kustomize wraps long values) are ignored, nothing else is.
    """
    return base64.b64decode(value.replace("\n", ""), validate=True)


def test_overlay_adds_the_secret_and_fills_the_ca_bundle(overlay: Path) -> None:
    """
    The README's overlay creates the kubernetes.io/tls Secret from the
    C{wardled-certs} files, mounts it under its generated name, and puts
    C{ca.crt} into both APIServices.
    """
    built = kustomize(overlay)
    local = overlay / "certs"
    [secret] = [d for d in built if d["kind"] == "Secret"]
    assert round_trip(secret) == secret
    assert secret["type"] == "kubernetes.io/tls"
    assert secret["metadata"]["namespace"] == NAMESPACE
    assert secret["metadata"]["name"].startswith(f"{SERVING_SECRET}-")
    files = {"tls.crt": "server.crt", "tls.key": "server.key", "ca.crt": "ca.crt"}
    for key, name in files.items():
        assert unwrapped_base64(secret["data"][key]) == (local / name).read_bytes()
    deployment = find(built, "Deployment")
    secret_names = [
        v["secret"]["secretName"]
        for v in deployment["spec"]["template"]["spec"]["volumes"]
        if "secret" in v
    ]
    assert secret_names == [secret["metadata"]["name"]]
    services = api_services(built)
    assert set(services) == {"v1alpha1", "v1beta1"}
    for api_service in services.values():
        assert unwrapped_base64(api_service["spec"]["caBundle"]) == (
            local / "ca.crt"
        ).read_bytes()


def test_overlay_certificate_is_valid_for_the_service(overlay: Path) -> None:
    """
    The serving certificate C{wardled-certs init --san api.wardle.svc}
    makes is signed by the CA in caBundle and names the host the
    aggregator dials.
    """
    local = overlay / "certs"
    ca = x509.load_pem_x509_certificate((local / "ca.crt").read_bytes())
    serving = x509.load_pem_x509_certificate((local / "server.crt").read_bytes())
    serving.verify_directly_issued_by(ca)
    names = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert SERVICE_HOST in names.value.get_values_for_type(x509.DNSName)


# The Flunder example ---------------------------------------------------------


def flunder_example() -> Document:
    [document] = load_documents(DEPLOY / FLUNDER_EXAMPLE)
    return document


def test_flunder_example_decodes_strictly() -> None:
    """
    wardled decodes the example as a v1beta1 Flunder with no unknown field
    (kubectl's default is fieldValidation=Strict), and it is valid.
    """
    document = flunder_example()
    assert document["apiVersion"] == f"{GROUP}/v1beta1"
    decoded = FLUNDERS.decode_request("v1beta1", document)
    assert decoded.unknown_fields == []
    assert validate_flunder(decoded.internal) == []
    metadata = {"namespace": "default", **decoded.internal["metadata"]}
    assert validate_object_meta(metadata, namespaced=True) == []


def test_strict_decoding_notices_an_unknown_field() -> None:
    document = flunder_example()
    document["spec"] = {**document["spec"], "flunderRef": "x"}
    decoded = FLUNDERS.decode_request("v1beta1", document)
    assert decoded.unknown_fields == ["spec.flunderRef"]
