"""Validates real Portico responses against an OpenAPI document, with jsonschema (Draft 2020-12).

argv[1]: the document (JSON file). stdin: [{"method", "path", "status", "content_type", "body"},
...], optionally with "template", the document's path; otherwise the path is matched against the
document's templates. Prints one line per failure and exits 1 when there is any.
"""
import json
import re
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


def template_of(path):
    """The document path a concrete path answers to; literal segments beat parameters."""
    path = path.split("?")[0]
    matches = []
    for template in document["paths"]:
        pattern = "^" + re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path):
            matches.append((template.count("{"), template))
    return min(matches)[1] if matches else None


for answer in json.load(sys.stdin):
    where = f'{answer["method"]} {answer["path"]} -> {answer["status"]}'
    template = answer.get("template") or template_of(answer["path"])
    if template is None:
        # A path no client of the document would send (a key with a part missing, say):
        # it must still get a client-error problem.
        if answer["status"] not in (400, 404) or answer["content_type"] != "application/problem+json":
            failures.append(f"{where}: no path of the document matches")
        else:
            schema = {"$ref": "#/components/schemas/Problem", "components": components}
            for error in Draft202012Validator(schema).iter_errors(answer["body"]):
                failures.append(f"{where}: {error.message} at {list(error.absolute_path)}")
        continue
    operation = document["paths"].get(template, {}).get(answer["method"].lower())
    if operation is None:
        # A method the document does not offer on the path must be refused with 405.
        if answer["status"] != 405 or answer["content_type"] != "application/problem+json":
            failures.append(f"{where}: no operation {template} in the document")
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
    # `text/csv; charset=utf-8` is documented as `text/csv`.
    media = content.get(answer["content_type"]) or content.get(answer["content_type"].split(";")[0].strip())
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
