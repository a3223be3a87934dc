"""Renders the chart with Helm's own library (helm-python-sdk) and checks
every manifest against the Kubernetes OpenAPI schemas (kubernetes-validate,
strict: unknown fields are errors). Prints JSON for the Rust tests:
{"manifests": [...objects...], "notes": "...", "errors": [...]}; a values
file the chart's values.schema.json refuses gives {"values_error": "..."}.

usage: render.py <chart dir> <values JSON file> <kubernetes version>
"""
import json
import sys

import kubernetes_validate
import yaml
from helm_python import Chart
from helm_python.errors import HelmError

chart_dir, values_file, k8s_version = sys.argv[1:4]
values = json.load(open(values_file))
chart = Chart.load(chart_dir)
try:
    chart.validate_schema(values)
    rendered = chart.render(values, name="bindery", namespace="binder", is_install=True)
except HelmError as e:
    print(json.dumps({"values_error": str(e)}))
    sys.exit(0)

manifests, errors, notes = [], [], ""
for path, text in sorted(rendered.items()):
    if path.endswith("NOTES.txt"):
        notes = text
        continue
    for doc in yaml.safe_load_all(text):
        if not doc:
            continue
        manifests.append(doc)
        try:
            kubernetes_validate.validate(doc, k8s_version, strict=True)
        except kubernetes_validate.ValidationError as e:
            errors.append(f"{path}: {doc.get('kind')} {doc.get('metadata', {}).get('name')}: {e.message} at {list(e.path)}")
print(json.dumps({"manifests": manifests, "notes": notes, "errors": errors}))
