//! Reading and checking `ArchitectureSearch` manifests before anything runs.
//!
//! A manifest is rejected with the field named: YAML syntax (line and column), the wrong kind or
//! API version, a field of the wrong type or an unknown enum value (the JSON path of the field),
//! a CEL rule of the CRD (the same rules the API server enforces, evaluated here), or invalid
//! search-space parameters.

use std::path::{Path, PathBuf};

use nasop_crds::api::{ArchitectureSearch, GROUP, VERSION};
use nasop_crds::{SearchSpace, SpaceError};

/// Why a manifest was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Not valid YAML.
    #[error("not valid YAML: {0}")]
    Yaml(String),
    /// Not an `ArchitectureSearch` of this API version.
    #[error("{field}: expected {expected:?}, found {found:?}")]
    Kind {
        /// `kind` or `apiVersion`.
        field: &'static str,
        /// What nasop reads.
        expected: String,
        /// What the manifest says.
        found: String,
    },
    /// A field has the wrong type, an unknown value, or is missing.
    #[error("{path}: {message}")]
    Field {
        /// JSON path of the field, e.g. `spec.budget.maxTrials`.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// One or more CEL rules of the CRD failed.
    #[error("{}", .0.join("; "))]
    Rules(Vec<String>),
    /// The search-space parameters are invalid.
    #[error(transparent)]
    Space(#[from] SpaceError),
}

/// Parses a manifest (YAML or JSON) into an `ArchitectureSearch`.
///
/// # Errors
/// [`ManifestError::Yaml`], [`ManifestError::Kind`] or [`ManifestError::Field`].
pub fn parse(text: &str) -> Result<ArchitectureSearch, ManifestError> {
    // Kubernetes manifests are JSON documents written in YAML: read a JSON value first.
    let value: serde_json::Value =
        serde_yaml::from_str(text).map_err(|e| ManifestError::Yaml(e.to_string()))?;
    let api_version = format!("{GROUP}/{VERSION}");
    for (field, expected) in [("kind", "ArchitectureSearch"), ("apiVersion", &api_version)] {
        let found = value
            .get(field)
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        if found != expected {
            return Err(ManifestError::Kind {
                field,
                expected: expected.to_string(),
                found: found.to_string(),
            });
        }
    }
    serde_path_to_error::deserialize(value).map_err(|e| ManifestError::Field {
        path: e.path().to_string(),
        message: e.inner().to_string(),
    })
}

/// Checks a parsed search: the CRD's CEL rules and the search-space parameters; gives the
/// built space.
///
/// # Errors
/// [`ManifestError::Rules`] with one `field: message` per failed rule, or
/// [`ManifestError::Space`].
pub fn check(search: &ArchitectureSearch) -> Result<SearchSpace, ManifestError> {
    if let Err(errors) = search.validate_cel() {
        return Err(ManifestError::Rules(
            errors
                .as_slice()
                .iter()
                .map(|e| format!("{}: {}", e.field_path, e.message))
                .collect(),
        ));
    }
    Ok(search.spec.search_space.build()?)
}

/// Reads, parses and checks a manifest file.
///
/// # Errors
/// Any [`ManifestError`].
pub fn load(path: &Path) -> Result<(ArchitectureSearch, SearchSpace), ManifestError> {
    let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let search = parse(&text)?;
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

    #[test]
    fn good_manifest_loads() {
        let search = parse(GOOD).unwrap();
        let space = check(&search).unwrap();
        assert_eq!(space.decisions().len(), 6);
    }

    #[test]
    fn wrong_type_names_the_field_path() {
        let err = parse(&GOOD.replace("maxTrials: 10", "maxTrials: ten")).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("spec.budget.maxTrials: invalid type: string \"ten\""),
            "{msg}"
        );
    }

    #[test]
    fn unknown_enum_value_names_the_field_and_the_allowed_values() {
        let err = parse(&GOOD.replace("algorithm: Random", "algorithm: Bayes")).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("spec.strategy.algorithm: unknown variant `Bayes`"),
            "{msg}"
        );
        assert!(msg.contains("PPO") && msg.contains("Evolution"), "{msg}");
    }

    #[test]
    fn missing_field_names_its_parent() {
        let err = parse(&GOOD.replace("    image: trainer\n", "")).unwrap_err();
        assert_eq!(err.to_string(), "spec.trial: missing field `image`");
    }

    #[test]
    fn unknown_search_space_is_named() {
        let err = parse(&GOOD.replace("{nb201: {}}", "{darts: {}}")).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("spec.searchSpace: unknown variant `darts`"),
            "{msg}"
        );
        assert!(msg.contains("nasnet") && msg.contains("nb201"), "{msg}");
    }

    #[test]
    fn wrong_kind_is_named() {
        let err = parse(&GOOD.replace("kind: ArchitectureSearch", "kind: Experiment")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "kind: expected \"ArchitectureSearch\", found \"Experiment\""
        );
        let err = parse(&GOOD.replace("v1alpha1", "v1")).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("apiVersion: expected \"nasop.dev/v1alpha1\""));
    }

    #[test]
    fn cel_rule_failures_name_the_field() {
        let search = parse(&GOOD.replace("parallelism: 2", "parallelism: 20")).unwrap();
        let err = check(&search).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("budget.parallelism must not exceed budget.maxTrials"),
            "{msg}"
        );
    }

    #[test]
    fn bad_space_parameters_are_named() {
        let search = parse(&GOOD.replace("{nb201: {}}", "{nb201: {ops: []}}")).unwrap();
        let err = check(&search).unwrap_err();
        assert!(
            err.to_string()
                .contains("searchSpace.nb201.ops: must list at least one value"),
            "{err}"
        );
    }

    #[test]
    fn yaml_syntax_error_is_reported() {
        let err = parse("spec: [unclosed").unwrap_err();
        assert!(matches!(err, ManifestError::Yaml(_)), "{err:?}");
    }
}
