//! Reading and checking `ArchitectureSearch` manifests before anything runs.
//!
//! A manifest goes through the checks the API server would make, in its order, and is rejected
//! with the field named: YAML syntax (line and column; duplicate keys and non-finite numbers
//! included), the kind and API version, `metadata.name`, the CRD's OpenAPI schema (types,
//! required fields, ranges, enums, unknown fields as kubectl's strict validation, one-key
//! unions), the CRD's CEL rules, and finally the search-space parameters.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use kube::core::cel::{compile_schema, validate_compiled, CompiledSchema};
use nasop_crds::api::{crds, ArchitectureSearch, GROUP, VERSION};
use nasop_crds::{SearchSpace, SpaceError};
use serde::Deserialize;

use crate::schema::SchemaValidator;

/// Why a manifest was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("cannot read {path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
    /// Not valid YAML (or JSON).
    #[error("not valid YAML: {0}")]
    Yaml(String),
    /// The file holds no document, or not exactly the one `ArchitectureSearch` expected.
    #[error("{0}")]
    Documents(String),
    /// Not an `ArchitectureSearch` of this API version.
    #[error("{field}: expected {expected:?}, found {found}")]
    Kind {
        /// `kind` or `apiVersion`.
        field: &'static str,
        /// What nasop reads.
        expected: String,
        /// What the manifest says.
        found: String,
    },
    /// Problems with fields: `metadata.name`, the schema, or a field serde rejects.
    #[error("{}", list(.0))]
    Fields(Vec<String>),
    /// One or more CEL rules of the CRD failed.
    #[error("{}", list(.0))]
    Rules(Vec<String>),
    /// The search-space parameters are invalid.
    #[error(transparent)]
    Space(#[from] SpaceError),
}

fn list(problems: &[String]) -> String {
    match problems {
        [one] => one.clone(),
        many => format!("{} problems:\n  {}", many.len(), many.join("\n  ")),
    }
}

/// Splits a YAML (or JSON) text into its documents, as JSON values.
///
/// # Errors
/// [`ManifestError::Yaml`] for syntax errors, duplicate keys and non-string keys, naming the
/// document and the place; [`ManifestError::Fields`] for non-finite numbers (`.nan`, `.inf`:
/// JSON, and so the API, has none). Merge keys (`<<`) are expanded.
pub fn documents(text: &str) -> Result<Vec<serde_json::Value>, ManifestError> {
    let mut docs = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let yaml_error = |e: &dyn std::fmt::Display| {
            ManifestError::Yaml(format!("document {}: {}", i + 1, shorten(&e.to_string())))
        };
        let mut value = serde_yaml::Value::deserialize(doc).map_err(|e| yaml_error(&e))?;
        if value.is_null() {
            continue; // an empty document, e.g. after a trailing `---`
        }
        value.apply_merge().map_err(|e| yaml_error(&e))?; // `<<: *anchor` merge keys
        if let Some(path) = non_finite(&value, String::new()) {
            return Err(ManifestError::Fields(vec![format!(
                "{path}: .nan and .inf are not numbers in JSON or the Kubernetes API (document {})",
                i + 1
            )]));
        }
        let json = serde_json::to_value(&value).map_err(|e| yaml_error(&e))?;
        docs.push(json);
    }
    Ok(docs)
}

fn non_finite(value: &serde_yaml::Value, path: String) -> Option<String> {
    match value {
        serde_yaml::Value::Number(n) if n.as_f64().is_some_and(|f| !f.is_finite()) => {
            Some(if path.is_empty() {
                "(document)".into()
            } else {
                path
            })
        }
        serde_yaml::Value::Sequence(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| non_finite(v, format!("{path}[{i}]"))),
        serde_yaml::Value::Mapping(map) => map.iter().find_map(|(k, v)| {
            let key = k
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("{k:?}"));
            non_finite(
                v,
                if path.is_empty() {
                    key
                } else {
                    format!("{path}.{key}")
                },
            )
        }),
        serde_yaml::Value::Tagged(tagged) => non_finite(&tagged.value, path),
        _ => None,
    }
}

/// At most 200 characters of a message (a YAML error may quote a huge key).
fn shorten(text: &str) -> String {
    crate::schema::shorten(text, 200)
}

fn describe(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "nothing",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "a mapping",
    }
}

/// Whether a document is an `ArchitectureSearch` (by `kind`).
pub fn is_search(value: &serde_json::Value) -> bool {
    value.get("kind").and_then(|k| k.as_str()) == Some("ArchitectureSearch")
}

/// The `ArchitectureSearch` CRD's CEL rules (`x-kubernetes-validations`), compiled once:
/// compiling them took 5.4 ms a check (measured on the 2-core development VM), and the search
/// reconciler checks the spec on every reconcile.
fn cel_rules() -> &'static CompiledSchema {
    static RULES: OnceLock<CompiledSchema> = OnceLock::new();
    RULES.get_or_init(|| {
        let crd = &crds()[0];
        let schema = crd.spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .expect("nasop CRDs carry a schema");
        compile_schema(&serde_json::to_value(schema).expect("a schema serializes"))
    })
}

fn schema() -> &'static SchemaValidator {
    static SCHEMA: OnceLock<SchemaValidator> = OnceLock::new();
    SCHEMA.get_or_init(|| SchemaValidator::for_crd(&crds()[0]))
}

/// Whether `name` is a DNS-1123 subdomain of at most 63 characters (`dots`) or a DNS-1123
/// label (no dots), the forms Kubernetes requires of object names and namespaces.
fn dns_name(name: &str, dots: bool) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || (dots && b == b'.')
        })
        && name
            .split('.')
            .all(|part| !part.is_empty() && !part.starts_with('-') && !part.ends_with('-'))
}

/// Checks `metadata.name` as the API server does (a DNS-1123 subdomain) and as nasop needs
/// (at most 63 characters: it is a label value on every trial), and `metadata.namespace`
/// (a DNS-1123 label).
fn metadata_problems(value: &serde_json::Value) -> Vec<String> {
    let mut problems = Vec::new();
    for (field, dots, required) in [("name", true, true), ("namespace", false, false)] {
        let shown = match value.get("metadata").and_then(|m| m.get(field)) {
            None | Some(serde_json::Value::Null) if required => {
                problems.push("metadata.name: required (generateName is not supported)".into());
                continue;
            }
            None | Some(serde_json::Value::Null) => continue,
            Some(serde_json::Value::String(text)) if dns_name(text, dots) => continue,
            Some(serde_json::Value::String(text)) => format!("{:?}", shorten(text)),
            Some(other) => describe(other).to_string(),
        };
        let form = if dots {
            "1 to 63 lowercase letters, digits, '-' and '.', each dot-separated part starting and \
             ending with a letter or digit (a DNS-1123 subdomain that fits a label value)"
        } else {
            "1 to 63 lowercase letters, digits and '-', starting and ending with a letter or digit \
             (a DNS-1123 label)"
        };
        problems.push(format!(
            "metadata.{field}: {shown} is not allowed; allowed: {form}"
        ));
    }
    problems
}

/// Parses one document into an `ArchitectureSearch`.
///
/// # Errors
/// [`ManifestError::Kind`] or [`ManifestError::Fields`] (every schema problem, by field path).
pub fn parse_value(value: serde_json::Value) -> Result<ArchitectureSearch, ManifestError> {
    if !value.is_object() {
        return Err(ManifestError::Documents(format!(
            "expected a mapping (an ArchitectureSearch object), found {}",
            describe(&value)
        )));
    }
    let api_version = format!("{GROUP}/{VERSION}");
    for (field, expected) in [("kind", "ArchitectureSearch"), ("apiVersion", &api_version)] {
        let found = value.get(field);
        if found.and_then(|v| v.as_str()) != Some(expected) {
            return Err(ManifestError::Kind {
                field,
                expected: expected.to_string(),
                found: match found {
                    Some(serde_json::Value::String(s)) => format!("{:?}", shorten(s)),
                    Some(other) => describe(other).to_string(),
                    None => "nothing".into(),
                },
            });
        }
    }
    let mut problems = metadata_problems(&value);
    problems.extend(schema().problems(&value));
    if !problems.is_empty() {
        return Err(ManifestError::Fields(problems));
    }
    serde_path_to_error::deserialize(value)
        .map_err(|e| ManifestError::Fields(vec![format!("{}: {}", e.path(), e.inner())]))
}

/// Parses every `ArchitectureSearch` of a text (other kinds of documents beside them, such as a
/// Namespace, are passed over); one result per search, in file order.
///
/// # Errors
/// The error of [`documents`], or [`ManifestError::Documents`] when the text holds no
/// document or no `ArchitectureSearch` (a single document of another kind gets the error of
/// [`parse_value`], which names its kind).
pub fn parse_all(
    text: &str,
) -> Result<Vec<Result<ArchitectureSearch, ManifestError>>, ManifestError> {
    let docs = documents(text)?;
    match docs.len() {
        0 => Err(ManifestError::Documents(
            "the file is empty: no YAML document in it".into(),
        )),
        1 => Ok(vec![parse_value(docs.into_iter().next().expect("one"))]),
        n => {
            let searches: Vec<_> = docs
                .into_iter()
                .filter(is_search)
                .map(parse_value)
                .collect();
            if searches.is_empty() {
                return Err(ManifestError::Documents(format!(
                    "none of the file's {n} documents is an ArchitectureSearch"
                )));
            }
            Ok(searches)
        }
    }
}

/// Parses a text that holds exactly one `ArchitectureSearch`.
///
/// # Errors
/// [`ManifestError::Documents`] when it holds none or several, or the error of
/// [`parse_all`].
pub fn parse(text: &str) -> Result<ArchitectureSearch, ManifestError> {
    let mut searches = parse_all(text)?;
    match searches.len() {
        1 => searches.pop().expect("one search"),
        n => Err(ManifestError::Documents(format!(
            "expected one ArchitectureSearch in the file, found {n}"
        ))),
    }
}

/// Checks a parsed search: the CRD's CEL rules and the search-space parameters; gives the
/// built space.
///
/// # Errors
/// [`ManifestError::Rules`] with one `field: message` per failed rule (or when dedupe is on and
/// `maxTrials` exceeds the number of distinct children), or [`ManifestError::Space`].
pub fn check(search: &ArchitectureSearch) -> Result<SearchSpace, ManifestError> {
    let object = serde_json::to_value(search).expect("an ArchitectureSearch serializes");
    if let Err(errors) = validate_compiled(cel_rules(), &object, None) {
        return Err(ManifestError::Rules(
            errors
                .as_slice()
                .iter()
                .map(|e| match e.field_path.as_str() {
                    "" => e.message.clone(),
                    path => format!("{path}: {}", e.message),
                })
                .collect(),
        ));
    }
    let space = search.spec.search_space.build()?;
    let budget = &search.spec.budget;
    if search.spec.strategy.dedupe
        && num_bigint::BigUint::from(budget.max_trials.max(0) as u64) > space.size()
    {
        return Err(ManifestError::Rules(vec![format!(
            "spec.budget.maxTrials: {} exceeds the {} distinct children of the search space while \
             spec.strategy.dedupe is true; lower maxTrials or widen the space",
            budget.max_trials,
            space.size()
        )]));
    }
    if search.spec.objective.latency.is_some()
        && crate::commands::probe_input(&search.spec).is_none()
    {
        return Err(ManifestError::Rules(vec![
            "spec.probe.inputShape: required (4 numbers [1, C, H, H], square images) with a \
             latency objective when spec.trial.dataset.format does not fix the image shape \
             (ImageFolder)"
                .into(),
        ]));
    }
    Ok(space)
}

/// Reads a file.
///
/// # Errors
/// [`ManifestError::Io`].
pub fn read(path: &Path) -> Result<String, ManifestError> {
    std::fs::read_to_string(path).map_err(|cause| ManifestError::Io {
        path: path.to_path_buf(),
        cause,
    })
}

/// Reads, parses and checks a manifest file holding one `ArchitectureSearch`.
///
/// # Errors
/// Any [`ManifestError`].
pub fn load(path: &Path) -> Result<(ArchitectureSearch, SearchSpace), ManifestError> {
    let search = parse(&read(path)?)?;
    let space = check(&search)?;
    Ok((search, space))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
apiVersion: nasop.dev/v1alpha1
kind: ArchitectureSearch
metadata: {name: s}
spec:
  searchSpace: {nb201: {}}
  strategy: {algorithm: Random}
  budget: {maxTrials: 10, parallelism: 2}
  trial:
    image: trainer
    dataset: {format: CIFAR10, path: /data}
"#;

    fn error(text: &str) -> String {
        match parse(text) {
            Err(e) => e.to_string(),
            Ok(search) => check(&search).map(|_| ()).unwrap_err().to_string(),
        }
    }

    #[test]
    fn good_manifest_loads() {
        let search = parse(GOOD).unwrap();
        let space = check(&search).unwrap();
        assert_eq!(space.decisions().len(), 6);
    }

    #[test]
    fn a_latency_objective_on_an_image_folder_needs_the_probe_input_shape() {
        let folder = GOOD
            .replace("format: CIFAR10", "format: ImageFolder")
            .replace(
                "  trial:",
                "  objective: {latency: {targetMs: 5, deviceClass: pixel}}\n  trial:",
            );
        let msg = error(&folder);
        assert!(msg.contains("spec.probe.inputShape: required"), "{msg}");
        let shaped = format!("{folder}  probe: {{inputShape: [1, 3, 64, 64]}}\n");
        assert!(check(&parse(&shaped).unwrap()).is_ok());
    }

    #[test]
    fn wrong_type_names_the_field_path() {
        let msg = error(&GOOD.replace("maxTrials: 10", "maxTrials: ten"));
        assert!(
            msg.starts_with("spec.budget.maxTrials: \"ten\" is not of type"),
            "{msg}"
        );
    }

    #[test]
    fn out_of_range_numbers_name_the_field_and_the_bound() {
        let msg = error(&GOOD.replace("parallelism: 2", "parallelism: 0"));
        assert_eq!(
            msg,
            "spec.budget.parallelism: 0 is less than the minimum of 1"
        );
        let msg = error(&GOOD.replace("maxTrials: 10", "maxTrials: -5"));
        assert!(
            msg.contains("spec.budget.maxTrials: -5 is less than the minimum of 1"),
            "{msg}"
        );
    }

    #[test]
    fn unknown_enum_value_names_the_field_and_the_allowed_values() {
        let msg = error(&GOOD.replace("algorithm: Random", "algorithm: Bayes"));
        assert_eq!(
            msg,
            "spec.strategy.algorithm: \"Bayes\" is not allowed; allowed values: \"PPO\", \"REINFORCE\", \"Evolution\", \"Random\""
        );
        assert!(msg.contains("PPO") && msg.contains("Evolution"), "{msg}");
    }

    #[test]
    fn missing_field_names_its_parent() {
        let msg = error(&GOOD.replace("    image: trainer\n", ""));
        assert_eq!(msg, "spec.trial: \"image\" is a required property");
    }

    #[test]
    fn unknown_fields_are_rejected_like_kubectl_strict_validation() {
        let msg = error(&GOOD.replace("maxTrials: 10", "maxTrails: 10, maxTrials: 10"));
        assert!(
            msg.contains(
                "spec.budget: Additional properties are not allowed ('maxTrails' was unexpected)"
            ),
            "{msg}"
        );
        let msg = error(&GOOD.replace("{nb201: {}}", "{nb201: {chanels: 16}}"));
        assert!(msg.contains("'chanels' was unexpected"), "{msg}");
    }

    #[test]
    fn unions_need_exactly_one_key() {
        let msg = error(&GOOD.replace("{nb201: {}}", "{darts: {}}"));
        assert!(
            msg.contains(
                "spec.searchSpace: exactly one of nasnet, mnasnet, nb201 must be set, found none"
            ),
            "{msg}"
        );
        let msg = error(&GOOD.replace("{nb201: {}}", "{nb201: {}, nasnet: {}}"));
        assert!(msg.contains("must be set, found nasnet, nb201"), "{msg}");
    }

    #[test]
    fn several_problems_are_listed_together() {
        let msg = error(
            &GOOD
                .replace("parallelism: 2", "parallelism: 0")
                .replace("path: /data", "path: ''"),
        );
        assert!(msg.starts_with("2 problems:"), "{msg}");
        assert!(msg.contains("spec.trial.dataset.path"), "{msg}");
    }

    #[test]
    fn wrong_kind_is_named() {
        let msg = error(&GOOD.replace("kind: ArchitectureSearch", "kind: Experiment"));
        assert_eq!(
            msg,
            "kind: expected \"ArchitectureSearch\", found \"Experiment\""
        );
        let msg = error(&GOOD.replace("v1alpha1", "v1"));
        assert!(
            msg.starts_with("apiVersion: expected \"nasop.dev/v1alpha1\""),
            "{msg}"
        );
    }

    #[test]
    fn names_follow_the_api_rules() {
        let msg = error(&GOOD.replace("{name: s}", "{labels: {}}"));
        assert!(msg.starts_with("metadata.name: required"), "{msg}");
        let msg = error(&GOOD.replace("{name: s}", "{name: 'NB201 Search!'}"));
        assert!(
            msg.contains("metadata.name: \"NB201 Search!\" is not allowed"),
            "{msg}"
        );
        let long = "a".repeat(64);
        let msg = error(&GOOD.replace("{name: s}", &format!("{{name: {long}}}")));
        assert!(msg.contains("is not allowed"), "{msg}");
        assert!(parse(&GOOD.replace("{name: s}", "{name: nb201.run-2}")).is_ok());
        let msg = error(&GOOD.replace("{name: s}", "{name: s, namespace: 'Bad NS'}"));
        assert!(
            msg.starts_with("metadata.namespace: \"Bad NS\" is not allowed"),
            "{msg}"
        );
        let msg = error(&GOOD.replace("{name: s}", &format!("{{name: {}}}", "n".repeat(100_000))));
        assert!(msg.len() < 600, "{} bytes", msg.len());
    }

    /// Rules compiled and compile errors under `node`.
    fn compiled(node: &CompiledSchema) -> (usize, usize) {
        let children = node
            .properties
            .values()
            .chain(node.items.as_deref())
            .chain(node.additional_properties.as_deref())
            .chain(&node.all_of)
            .chain(&node.one_of)
            .chain(&node.any_of);
        children.fold(
            (node.validations.len(), node.compilation_errors().len()),
            |(rules, errors), child| {
                let (r, e) = compiled(child);
                (rules + r, errors + e)
            },
        )
    }

    #[test]
    fn every_cel_rule_of_the_crd_is_compiled_once_without_errors() {
        let yaml = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds/architecturesearches.yaml"),
        )
        .unwrap();
        let in_crd = yaml.matches("rule:").count();
        assert_eq!(in_crd, 10);
        assert_eq!(compiled(cel_rules()), (in_crd, 0));
        assert!(std::ptr::eq(cel_rules(), cel_rules()));
    }

    #[test]
    fn cel_rule_failures_name_the_field() {
        let msg = error(&GOOD.replace("parallelism: 2", "parallelism: 20"));
        assert!(
            msg.contains("budget.parallelism must not exceed budget.maxTrials"),
            "{msg}"
        );
    }

    #[test]
    fn a_budget_larger_than_the_space_is_rejected_when_deduplicating() {
        let small = GOOD.replace("{nb201: {}}", "{nb201: {ops: [none, skip_connect]}}");
        let msg = error(&small.replace("maxTrials: 10", "maxTrials: 65"));
        assert!(
            msg.contains("spec.budget.maxTrials: 65 exceeds the 64 distinct children"),
            "{msg}"
        );
        assert!(parse(&small.replace("maxTrials: 10", "maxTrials: 64"))
            .map(|s| check(&s).is_ok())
            .unwrap());
        let no_dedupe = small
            .replace("maxTrials: 10", "maxTrials: 65")
            .replace("{algorithm: Random}", "{algorithm: Random, dedupe: false}");
        assert!(check(&parse(&no_dedupe).unwrap()).is_ok());
    }

    #[test]
    fn bad_space_parameters_are_named() {
        let msg = error(&GOOD.replace("{nb201: {}}", "{nb201: {ops: [none, none]}}"));
        assert!(
            msg.contains("searchSpace.nb201.ops: none is listed twice"),
            "{msg}"
        );
    }

    #[test]
    fn yaml_problems_are_reported() {
        assert!(matches!(
            parse("spec: [unclosed"),
            Err(ManifestError::Yaml(_))
        ));
        let msg = error(&GOOD.replace("maxTrials: 10", "maxTrials: 10, maxTrials: 1"));
        assert!(
            msg.contains("duplicate entry with key \"maxTrials\""),
            "{msg}"
        );
        let msg = error(&GOOD.replace(
            "{format: CIFAR10, path: /data}",
            "{format: CIFAR10, path: /data}\n    learningRate: .nan",
        ));
        assert!(
            msg.contains("spec.trial.learningRate: .nan and .inf are not numbers"),
            "{msg}"
        );
        let merged = GOOD.replace("  trial:\n", "  trial:\n    <<: {epochs: 3}\n");
        assert_eq!(parse(&merged).unwrap().spec.trial.epochs, 3);
    }

    #[test]
    fn empty_and_non_mapping_documents_are_named() {
        assert_eq!(error(""), "the file is empty: no YAML document in it");
        assert_eq!(error("---\n"), "the file is empty: no YAML document in it");
        assert_eq!(
            error("[1, 2]"),
            "expected a mapping (an ArchitectureSearch object), found a list"
        );
        assert_eq!(
            error("just some text"),
            "expected a mapping (an ArchitectureSearch object), found a string"
        );
    }

    #[test]
    fn multi_document_files_need_exactly_one_search() {
        let namespace = "apiVersion: v1\nkind: Namespace\nmetadata: {name: nas}\n";
        let search = parse(&format!("{namespace}---{GOOD}")).unwrap();
        assert_eq!(search.metadata.name.as_deref(), Some("s"));
        let msg = error(&format!("{GOOD}---{GOOD}"));
        assert_eq!(msg, "expected one ArchitectureSearch in the file, found 2");
        let all = parse_all(&format!(
            "{GOOD}---\n{namespace}---{}",
            GOOD.replace("name: s", "name: t")
        ))
        .unwrap();
        let names: Vec<_> = all
            .into_iter()
            .map(|s| s.unwrap().metadata.name.unwrap())
            .collect();
        assert_eq!(names, ["s", "t"]);
        let msg = parse_all(&format!("{namespace}---\n{namespace}"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            msg,
            "none of the file's 2 documents is an ArchitectureSearch"
        );
    }

    #[test]
    fn json_manifests_work() {
        let value: serde_json::Value = serde_yaml::from_str(GOOD).unwrap();
        assert!(parse(&serde_json::to_string(&value).unwrap()).is_ok());
    }
}
