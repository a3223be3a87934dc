"""Renders the chart with Helm's own library (helm-python-sdk) and checks
every manifest against the Kubernetes OpenAPI schemas (kubernetes-validate,
strict: unknown fields are errors), or, for the custom resources the chart
can render (ServiceMonitor, HTTPRoute), against `crds/`. Prints JSON for the
Rust tests: {"manifests": [...objects...], "notes": "...", "errors": [...],
"yaml_in_secrets": {"<Secret name>/<key>": value}} (keys ending `.yaml`,
e.g. the hub Secret's `values.yaml`, decoded for the tests to read);
a values file the chart's values.schema.json or its templates refuse gives
{"values_error": "..."}.

With `jupyterhub.enabled`, the chart is rendered with `z2jh/` as its
`jupyterhub` dependency: a test double of the parts of zero-to-jupyterhub a
parent chart relies on (the real chart cannot be fetched here).

usage: render.py <chart dir> <values JSON file> <kubernetes version>
"""
import base64
import json
import os
import shutil
import sys
import tempfile

import jsonschema
import kubernetes_validate
import yaml
from helm_python import Chart
from helm_python.errors import HelmError

chart_dir, values_file, k8s_version = sys.argv[1:4]
here = os.path.dirname(os.path.abspath(__file__))
values = json.load(open(values_file))

with tempfile.TemporaryDirectory() as tmp:
    if values.get("jupyterhub", {}).get("enabled"):
        copy = os.path.join(tmp, "bindery")
        shutil.copytree(chart_dir, copy, ignore=shutil.ignore_patterns("tests"))
        shutil.copytree(os.path.join(here, "z2jh"), os.path.join(copy, "charts", "jupyterhub"))
        chart_dir = copy
    chart = Chart.load(chart_dir)
    try:
        chart.validate_schema(values)
        rendered = chart.render(values, name="bindery", namespace="binder", is_install=True)
    except HelmError as e:
        print(json.dumps({"values_error": str(e)}))
        sys.exit(0)


def custom_schema(doc):
    group = doc.get("apiVersion", "").split("/")[0]
    path = os.path.join(here, "crds", f"{group}_{doc.get('kind')}.json")
    return json.load(open(path)) if os.path.exists(path) else None


manifests, errors, notes, yaml_in_secrets = [], [], "", {}
for path, text in sorted(rendered.items()):
    if path.endswith("NOTES.txt"):
        notes = text
        continue
    for doc in yaml.safe_load_all(text):
        if not doc:
            continue
        manifests.append(doc)
        if doc.get("kind") == "Secret":
            for key, value in (doc.get("data") or {}).items():
                if key.endswith(".yaml"):
                    yaml_in_secrets[f"{doc['metadata']['name']}/{key}"] = yaml.safe_load(base64.b64decode(value))
        where = f"{path}: {doc.get('kind')} {doc.get('metadata', {}).get('name')}"
        try:
            kubernetes_validate.validate(doc, k8s_version, strict=True)
        except kubernetes_validate.ValidationError as e:
            errors.append(f"{where}: {e.message} at {list(e.path)}")
        except kubernetes_validate.utils.SchemaNotFoundError:
            schema = custom_schema(doc)
            if schema is None:
                errors.append(f"{where}: no schema for {doc.get('apiVersion')} {doc.get('kind')}")
                continue
            for e in jsonschema.Draft7Validator(schema).iter_errors(doc):
                errors.append(f"{where}: {e.message} at {list(e.path)}")
print(json.dumps({"manifests": manifests, "notes": notes, "errors": errors, "yaml_in_secrets": yaml_in_secrets}))
