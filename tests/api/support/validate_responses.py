"""Validates real Portico responses against an OpenAPI document, with jsonschema (Draft 2020-12).

argv[1]: the document (JSON file). stdin: [{"method", "path", "template", "status",
"content_type", "body"}, ...] where `template` is the document's path. Prints one line per
failure and exits 1 when there is any.
"""
import json
import sys

from jsonschema import Draft202012Validator

document = json.load(open(sys.argv[1]))
components = document.get("components", {})
failures = []


def resolve(node):
    while isinstance(node, dict) and "$ref" in node and len(node) == 1:
        kind, name = node["$ref"].split("/")[-2:]
        node = components[kind][name]
    return node


for answer in json.load(sys.stdin):
    where = f'{answer["method"]} {answer["path"]} -> {answer["status"]}'
    operation = document["paths"].get(answer["template"], {}).get(answer["method"].lower())
    if operation is None:
        failures.append(f"{where}: no operation {answer['template']} in the document")
        continue
    response = operation["responses"].get(str(answer["status"]))
    if response is None:
        failures.append(f"{where}: status not documented")
        continue
    response = resolve(response)
    content = response.get("content")
    if not content:
        if answer["body"] is not None:
            failures.append(f"{where}: a body where the document has none")
        continue
    media = content.get(answer["content_type"])
    if media is None:
        failures.append(f'{where}: content type {answer["content_type"]} not documented')
        continue
    schema = dict(media["schema"])
    schema["components"] = components
    for error in Draft202012Validator(schema).iter_errors(answer["body"]):
        failures.append(f"{where}: {error.message} at {list(error.absolute_path)}")

for failure in failures:
    print(failure)
sys.exit(1 if failures else 0)
