//! Local validation of a resource against its CRD's OpenAPI schema: the checks the API server
//! makes before the CEL rules (types, required fields, ranges, lengths, enums), plus unknown
//! fields as kubectl's strict field validation rejects them, and the one-key unions
//! (`searchSpace`, `genotype`, `dataset.volume`).
//!
//! The structural schema is turned into a JSON Schema for the `jsonschema` crate: `nullable`
//! becomes a `null` type, objects with declared properties get `additionalProperties: false`,
//! and the unions' `oneOf: [{required: [a]}, ...]` are checked here, with a message that names
//! the keys.

use jsonschema::Validator;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{Map, Value};

/// Most problems reported for one document.
const MAX_PROBLEMS: usize = 20;

/// A compiled schema of one CRD version.
pub struct SchemaValidator {
    /// The CRD's own OpenAPI schema (for the union checks).
    openapi: Value,
    /// The converted schema, compiled.
    validator: Validator,
}

impl SchemaValidator {
    /// Compiles the schema of the CRD's first version.
    ///
    /// # Panics
    /// When the CRD has no schema or the converted schema does not compile (a bug of ours,
    /// caught by the tests).
    pub fn for_crd(crd: &CustomResourceDefinition) -> Self {
        let openapi = serde_json::to_value(
            crd.spec.versions[0]
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .expect("nasop CRDs carry a schema"),
        )
        .expect("a schema serializes");
        let mut converted = openapi.clone();
        // The API server validates these itself; CRD schemas leave them out.
        if let Some(Value::Object(properties)) = converted.get_mut("properties") {
            for (key, kind) in [
                ("apiVersion", "string"),
                ("kind", "string"),
                ("metadata", "object"),
            ] {
                properties
                    .entry(key)
                    .or_insert_with(|| serde_json::json!({ "type": kind }));
            }
        }
        to_json_schema(&mut converted);
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft7)
            .should_validate_formats(false)
            .build(&converted)
            .expect("the converted CRD schema compiles");
        Self { openapi, validator }
    }

    /// Every problem of `instance` (at most 20), each as `field.path: message`.
    pub fn problems(&self, instance: &Value) -> Vec<String> {
        let mut problems = Vec::new();
        check_unions(&self.openapi, instance, "", &mut problems);
        for error in self.validator.iter_errors(instance) {
            if problems.len() >= MAX_PROBLEMS {
                break;
            }
            let path = dotted(error.instance_path().as_str());
            let at = if path.is_empty() {
                "(document)".to_string()
            } else {
                path
            };
            let message = match error.kind() {
                // The crate's own message names only the first two allowed values.
                jsonschema::error::ValidationErrorKind::Enum { options } => format!(
                    "{} is not allowed; allowed values: {}",
                    error.instance(),
                    options
                        .as_array()
                        .map(|o| o
                            .iter()
                            .map(Value::to_string)
                            .collect::<Vec<_>>()
                            .join(", "))
                        .unwrap_or_default()
                ),
                _ => error.to_string(),
            };
            problems.push(format!("{at}: {}", shorten(&message, 300)));
        }
        problems.truncate(MAX_PROBLEMS);
        problems
    }
}

/// A JSON pointer (`/spec/trial/tolerations/0/key`) as a field path
/// (`spec.trial.tolerations[0].key`).
fn dotted(pointer: &str) -> String {
    let mut out = String::new();
    for segment in pointer.split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{segment}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&segment);
        }
    }
    out
}

/// At most `max` characters of `text`, with `...` where it was cut: error texts quote the
/// offending value, and a huge one would flood the terminal.
pub(crate) fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let cut: String = text.chars().take(max).collect();
    format!("{cut}...")
}

/// The keys of a `oneOf: [{required: [a]}, {required: [b]}, ...]` union, if `schema` is one.
fn union_keys(schema: &Map<String, Value>) -> Option<Vec<&str>> {
    let branches = schema.get("oneOf")?.as_array()?;
    branches
        .iter()
        .map(|b| {
            let b = b.as_object()?;
            let required = b.get("required")?.as_array()?;
            (b.len() == 1 && required.len() == 1).then(|| required[0].as_str())?
        })
        .collect()
}

fn check_unions(schema: &Value, instance: &Value, path: &str, problems: &mut Vec<String>) {
    let Some(schema) = schema.as_object() else {
        return;
    };
    match instance {
        Value::Object(object) => {
            if let Some(keys) = union_keys(schema) {
                let found: Vec<&str> = keys
                    .iter()
                    .copied()
                    .filter(|k| object.contains_key(*k))
                    .collect();
                if found.len() != 1 {
                    let found = if found.is_empty() {
                        "none".to_string()
                    } else {
                        found.join(", ")
                    };
                    problems.push(format!(
                        "{}: exactly one of {} must be set, found {found}",
                        if path.is_empty() { "(document)" } else { path },
                        keys.join(", ")
                    ));
                }
            }
            if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                for (key, sub) in properties {
                    if let Some(value) = object.get(key) {
                        let sub_path = if path.is_empty() {
                            key.clone()
                        } else {
                            format!("{path}.{key}")
                        };
                        check_unions(sub, value, &sub_path, problems);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(sub) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check_unions(sub, item, &format!("{path}[{i}]"), problems);
                }
            }
        }
        _ => {}
    }
}

/// Rewrites a Kubernetes structural schema in place into an equivalent JSON Schema (draft 7).
fn to_json_schema(schema: &mut Value) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    // Integer bounds come as floats (`minimum: 1.0`, OpenAPI's number type); as integers they
    // read better in messages ("less than the minimum of 1").
    if object.get("type").and_then(Value::as_str) == Some("integer") {
        for bound in ["minimum", "maximum"] {
            if let Some(b) = object.get_mut(bound) {
                if let Some(f) = b.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9e15) {
                    *b = Value::from(f as i64);
                }
            }
        }
    }
    if object.remove("nullable") == Some(Value::Bool(true)) {
        if let Some(Value::String(t)) = object.get("type").cloned() {
            object.insert("type".into(), serde_json::json!([t, "null"]));
        }
    }
    if union_keys(object).is_some() {
        object.remove("oneOf");
    }
    let preserve = object.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if object.contains_key("properties")
        && !object.contains_key("additionalProperties")
        && !preserve
    {
        object.insert("additionalProperties".into(), Value::Bool(false));
    }
    if let Some(Value::Object(properties)) = object.get_mut("properties") {
        properties.values_mut().for_each(to_json_schema);
    }
    for key in ["items", "additionalProperties"] {
        if let Some(sub) = object.get_mut(key) {
            to_json_schema(sub);
        }
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(Value::Array(branches)) = object.get_mut(key) {
            branches.iter_mut().for_each(to_json_schema);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pointers_become_field_paths() {
        assert_eq!(
            dotted("/spec/trial/tolerations/0/key"),
            "spec.trial.tolerations[0].key"
        );
        assert_eq!(
            dotted("/spec/trial/resources/limits/nvidia.com~1gpu"),
            "spec.trial.resources.limits.nvidia.com/gpu"
        );
        assert_eq!(dotted(""), "");
    }

    #[test]
    fn nullable_objects_and_unions_are_converted() {
        let mut schema = json!({
            "type": "object",
            "properties": {
                "a": {"type": "integer", "nullable": true},
                "u": {
                    "type": "object",
                    "oneOf": [{"required": ["x"]}, {"required": ["y"]}],
                    "properties": {"x": {"type": "object"}, "y": {"type": "object"}}
                },
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                         "properties": {"k": {"type": "string"}}}
            }
        });
        to_json_schema(&mut schema);
        assert_eq!(
            schema["properties"]["a"]["type"],
            json!(["integer", "null"])
        );
        assert_eq!(schema["additionalProperties"], json!(false));
        assert!(schema["properties"]["u"].get("oneOf").is_none());
        assert!(schema["properties"]["free"]
            .get("additionalProperties")
            .is_none());
    }
}
