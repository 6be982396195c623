//! Checks an OpenAPI 3.0 document (the subset signrelay's documents use) against what a
//! running server answers.

#![allow(dead_code)]

use serde_json::Value;

pub const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// An OpenAPI document of `openapi/`, parsed.
pub fn load(file: &str) -> Value {
    let path = format!("{}/openapi/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_yaml::from_str(&text).expect("the OpenAPI document is valid YAML")
}

/// Follows local `$ref`s.
pub fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let pointer = r.strip_prefix('#').expect("only local $refs");
            let target = doc
                .pointer(pointer)
                .unwrap_or_else(|| panic!("dangling $ref {r}"));
            resolve(doc, target)
        }
        None => v,
    }
}

/// Checks `value` against an OpenAPI 3.0 schema (the subset this document uses).
pub fn violations(doc: &Value, schema: &Value, value: &Value, at: &str, out: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    if value.is_null() && schema["nullable"] == true {
        return;
    }
    if let Some(alternatives) = schema.get("oneOf").and_then(Value::as_array) {
        let matching = alternatives
            .iter()
            .filter(|s| {
                let mut e = Vec::new();
                violations(doc, s, value, at, &mut e);
                e.is_empty()
            })
            .count();
        if matching != 1 {
            out.push(format!("{at}: matches {matching} schemas of oneOf"));
        }
        return;
    }
    if let Some(alternatives) = schema.get("anyOf").and_then(Value::as_array) {
        let matches = |s: &Value| {
            let mut e = Vec::new();
            violations(doc, s, value, at, &mut e);
            e.is_empty()
        };
        if !alternatives.iter().any(matches) {
            out.push(format!("{at}: matches none of the schemas of anyOf"));
        }
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(value) {
            out.push(format!("{at}: {value} is not one of {allowed:?}"));
        }
    }
    let ok = match schema.get("type").and_then(Value::as_str) {
        None => true,
        Some("object") => {
            let Some(obj) = value.as_object() else {
                out.push(format!("{at}: {value} is not an object"));
                return;
            };
            for r in schema["required"].as_array().into_iter().flatten() {
                let r = r.as_str().unwrap();
                if !obj.contains_key(r) {
                    out.push(format!("{at}: required property {r} is missing"));
                }
            }
            let props = schema.get("properties").and_then(Value::as_object);
            for (k, v) in obj {
                let at = format!("{at}.{k}");
                match (
                    props.and_then(|p| p.get(k)),
                    schema.get("additionalProperties"),
                ) {
                    (Some(s), _) => violations(doc, s, v, &at, out),
                    (None, Some(Value::Bool(false))) => {
                        out.push(format!("{at}: property not in the schema"))
                    }
                    (None, Some(s @ Value::Object(_))) => violations(doc, s, v, &at, out),
                    (None, _) => {}
                }
            }
            true
        }
        Some("array") => match value.as_array() {
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    violations(doc, &schema["items"], item, &format!("{at}[{i}]"), out);
                }
                true
            }
            None => false,
        },
        Some("string") => value.is_string(),
        Some("boolean") => value.is_boolean(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some(other) => panic!("{at}: schema type {other} not handled by this test"),
    };
    if !ok {
        out.push(format!("{at}: {value} is not of type {}", schema["type"]));
    }
}

pub fn assert_conforms(doc: &Value, schema: &Value, value: &Value, what: &str) {
    let mut out = Vec::new();
    violations(doc, schema, value, "$", &mut out);
    assert!(
        out.is_empty(),
        "{what} does not match its schema:\n  {}\n{value:#}",
        out.join("\n  ")
    );
}

/// The base path the document's first server names.
pub fn base(doc: &Value) -> &str {
    doc["servers"][0]["url"].as_str().expect("servers[0].url")
}

/// `(path, method, operation)` for every operation in the document.
pub fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let paths = doc["paths"].as_object().expect("paths");
    let mut ops = Vec::new();
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            if METHODS.contains(&method.as_str()) {
                ops.push((path.clone(), method.clone(), op.clone()));
            }
        }
    }
    ops
}

/// The operation documented for `path` and `method`.
pub fn operation<'a>(doc: &'a Value, path: &str, method: &str) -> &'a Value {
    let op = &doc["paths"][path][method];
    assert!(op.is_object(), "{method} {path} is not documented");
    op
}

/// A documented path with its parameters filled in from their examples.
pub fn concrete(path: &str, op: &Value) -> String {
    let mut p = path.to_string();
    for param in op["parameters"].as_array().into_iter().flatten() {
        if param["in"] == "path" {
            let name = param["name"].as_str().unwrap();
            let value = match param["example"].as_str() {
                Some(example) => example.to_string(),
                None => format!("sample-{name}"),
            };
            p = p.replace(&format!("{{{name}}}"), &value);
        }
    }
    assert!(!p.contains('{'), "unfilled parameter in {p}");
    p
}

/// The named request examples of an operation, in document order.
pub fn request_examples(op: &Value) -> Vec<(String, Value)> {
    op["requestBody"]["content"]["application/json"]["examples"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v["value"].clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// The documented response for `status`, or a panic naming what the server answered.
pub fn documented_response<'a>(
    doc: &'a Value,
    op: &'a Value,
    status: u16,
    what: &str,
) -> &'a Value {
    let responses = op["responses"].as_object().expect("responses");
    let r = responses.get(&status.to_string()).unwrap_or_else(|| {
        panic!(
            "{what}: the server answered {status}, documented are {:?}",
            responses.keys().collect::<Vec<_>>()
        )
    });
    resolve(doc, r)
}

/// Asserts that `status` is documented for the operation and that the body conforms to the
/// schema of its media type (`*/*`: bytes as received, not checked).
pub fn assert_answer_documented(
    doc: &Value,
    (path, method): (&str, &str),
    status: u16,
    content_type: &str,
    body: &[u8],
    what: &str,
) {
    let op = operation(doc, path, method);
    let response = documented_response(doc, op, status, what);
    match response["content"].as_object() {
        None => assert!(body.is_empty(), "{what}: a body where none is documented"),
        Some(types) if types.contains_key("*/*") => {}
        Some(types) => {
            let media = content_type.split(';').next().unwrap().trim();
            let schema = types
                .get(media)
                .unwrap_or_else(|| panic!("{what}: {media} is not documented: {types:?}"));
            if media.ends_with("json") {
                let body: Value =
                    serde_json::from_slice(body).unwrap_or_else(|_| panic!("{what}: not JSON"));
                assert_conforms(doc, &schema["schema"], &body, what);
            }
        }
    }
}
