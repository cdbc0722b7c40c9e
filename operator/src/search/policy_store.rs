//! The strategy state of a search in ConfigMaps. A ConfigMap holds at most 1 MiB
//! (kubernetes.io/docs/concepts/configuration/configmap: "The data stored in a ConfigMap cannot
//! exceed 1 MiB"), and a controller's state (weights and Adam moments) is about 1.05 MB at 100
//! LSTM units. The bytes are therefore split into parts of at most [`PART_BYTES`], one
//! ConfigMap each.
//!
//! The head ConfigMap `<search>-policy` holds part 0 and the part count, the length and the
//! SHA-256 of the whole. The other parts are named by that digest
//! (`<search>-policy-<first 12 hex digits>-<k>`), so parts are never overwritten: an update
//! creates the parts of its new state, then writes the head (one object: atomic, with the
//! head's resourceVersion as a precondition), then deletes the parts of the state it
//! replaced. A writer stopped half-way, or a concurrent writer that lost the head, leaves at
//! most unreferenced parts; a reader checks the checksum and never trusts a mixed state. Pure:
//! the controller writes and reads the ConfigMaps.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::ByteString;
use kube::api::ObjectMeta;
use sha2::{Digest, Sha256};

/// Bytes of state per ConfigMap (below the 1 MiB limit, leaving room for metadata).
pub const PART_BYTES: usize = 900 * 1024;
/// The key of the bytes in `binaryData`.
pub const DATA_KEY: &str = "state.safetensors";
/// Annotation of part 0: number of parts.
pub const PARTS_ANNOTATION: &str = "nasop.dev/policy-parts";
/// Annotation of part 0: SHA-256 (hex) of the whole state.
pub const SHA256_ANNOTATION: &str = "nasop.dev/policy-sha256";
/// Annotation of part 0: length of the whole state, bytes.
pub const LENGTH_ANNOTATION: &str = "nasop.dev/policy-bytes";

/// Why stored parts cannot be read back.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum StoreError {
    /// A part is missing or has no data.
    #[error("policy state part {0} is missing")]
    MissingPart(usize),
    /// Part 0's annotations are missing or malformed.
    #[error("policy state part 0 lacks a valid {0} annotation")]
    BadAnnotation(&'static str),
    /// The reassembled bytes do not match the recorded length or checksum.
    #[error("policy state is inconsistent ({0}); its parts were written by different updates")]
    Mismatch(&'static str),
}

/// The name of part `k` of the state whose SHA-256 is `digest` (hex): the head for `k = 0`.
pub fn part_name(search: &str, digest: &str, k: usize) -> String {
    if k == 0 {
        head_name(search)
    } else {
        format!("{search}-policy-{}-{k}", &digest[..digest.len().min(12)])
    }
}

/// The name of the head ConfigMap (part 0) of a search's state.
pub fn head_name(search: &str) -> String {
    format!("{search}-policy")
}

/// The names of the parts (1 and up) the head among `maps` refers to: the parts of the state
/// an update replaces (empty without a readable head).
pub fn referenced_parts(search: &str, maps: &[ConfigMap]) -> Vec<String> {
    let Some(a) = maps
        .iter()
        .find(|m| m.metadata.name.as_deref() == Some(head_name(search).as_str()))
        .and_then(|h| h.metadata.annotations.as_ref())
    else {
        return Vec::new();
    };
    match (
        a.get(PARTS_ANNOTATION)
            .and_then(|p| p.parse::<usize>().ok()),
        a.get(SHA256_ANNOTATION),
    ) {
        (Some(parts), Some(digest)) => (1..parts).map(|k| part_name(search, digest, k)).collect(),
        _ => Vec::new(),
    }
}

/// The policy-state ConfigMaps among `listed` (this search's, listed by its label before an
/// update) that the new head does not refer to (`kept`): the replaced state's parts, and parts
/// a writer stopped half-way or a writer that lost the race left behind. Deleting them after
/// the new head is written is safe: a writer that created one of them read the head before
/// this update, so its own head write (with that resourceVersion as a precondition) fails.
pub fn stale_parts(search: &str, listed: &[ConfigMap], kept: &[String]) -> Vec<String> {
    let head = head_name(search);
    listed
        .iter()
        .filter_map(|m| m.metadata.name.clone())
        .filter(|n| *n != head && n.starts_with(&head) && !kept.contains(n))
        .collect()
}

/// Splits `state` into ConfigMaps (in namespace `namespace`, labelled with the search), the
/// head carrying the count, length and checksum. Returned in write order: parts 1.. (named
/// by the checksum) first, the head last.
pub fn to_config_maps(search: &str, namespace: &str, state: &[u8]) -> Vec<ConfigMap> {
    let chunks: Vec<&[u8]> = if state.is_empty() {
        vec![&[][..]]
    } else {
        state.chunks(PART_BYTES).collect()
    };
    let digest = hex(&Sha256::digest(state));
    chunks
        .iter()
        .enumerate()
        .map(|(k, chunk)| {
            let annotations = (k == 0).then(|| {
                BTreeMap::from([
                    (PARTS_ANNOTATION.to_string(), chunks.len().to_string()),
                    (SHA256_ANNOTATION.to_string(), digest.clone()),
                    (LENGTH_ANNOTATION.to_string(), state.len().to_string()),
                ])
            });
            ConfigMap {
                metadata: ObjectMeta {
                    name: Some(part_name(search, &digest, k)),
                    namespace: Some(namespace.to_string()),
                    labels: Some(BTreeMap::from([
                        ("nasop.dev/search".to_string(), search.to_string()),
                        (
                            "app.kubernetes.io/managed-by".to_string(),
                            "nasop".to_string(),
                        ),
                    ])),
                    annotations,
                    ..ObjectMeta::default()
                },
                binary_data: Some(BTreeMap::from([(
                    DATA_KEY.to_string(),
                    ByteString(chunk.to_vec()),
                )])),
                ..ConfigMap::default()
            }
        })
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect()
}

/// Reassembles a state from its parts among `maps` (e.g. the ConfigMaps listed by the search's
/// label), checking count, length and checksum.
///
/// # Errors
/// [`StoreError`] for a missing part or annotation, or bytes that do not match part 0's record.
pub fn from_config_maps(search: &str, maps: &[ConfigMap]) -> Result<Vec<u8>, StoreError> {
    let part = |name: &str| {
        maps.iter()
            .find(|m| m.metadata.name.as_deref() == Some(name))
    };
    let first = part(&head_name(search)).ok_or(StoreError::MissingPart(0))?;
    let note = |key: &'static str| -> Result<&String, StoreError> {
        first
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(key))
            .ok_or(StoreError::BadAnnotation(key))
    };
    let parts: usize = note(PARTS_ANNOTATION)?
        .parse()
        .map_err(|_| StoreError::BadAnnotation(PARTS_ANNOTATION))?;
    let length: usize = note(LENGTH_ANNOTATION)?
        .parse()
        .map_err(|_| StoreError::BadAnnotation(LENGTH_ANNOTATION))?;
    let digest = note(SHA256_ANNOTATION)?.clone();
    let mut state = Vec::with_capacity(length);
    for k in 0..parts {
        let cm = if k == 0 {
            first
        } else {
            part(&part_name(search, &digest, k)).ok_or(StoreError::MissingPart(k))?
        };
        let bytes = cm
            .binary_data
            .as_ref()
            .and_then(|d| d.get(DATA_KEY))
            .ok_or(StoreError::MissingPart(k))?;
        state.extend_from_slice(&bytes.0);
    }
    if state.len() != length {
        return Err(StoreError::Mismatch("length"));
    }
    if hex(&Sha256::digest(&state)) != digest {
        return Err(StoreError::Mismatch("sha256"));
    }
    Ok(state)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy;
    use nasop_crds::api::{Algorithm, StrategySpec};
    use nasop_crds::space::nb201::Nb201SpaceSpec;
    use nasop_crds::space::SearchSpaceSpec;

    #[test]
    fn a_controller_state_above_one_mib_splits_and_comes_back_exactly() {
        let space = SearchSpaceSpec::Nb201(Nb201SpaceSpec::default())
            .build()
            .unwrap();
        let spec = StrategySpec {
            algorithm: Algorithm::Ppo,
            seed: Some(1),
            dedupe: true,
            controller: None,
            evolution: None,
        };
        let state = strategy::build(&space, &spec, 0).unwrap().save();
        assert!(state.len() > 1_000_000, "{} bytes", state.len());
        let maps = to_config_maps("s", "ns", &state);
        assert_eq!(maps.len(), 2);
        let names: Vec<_> = maps
            .iter()
            .map(|m| m.metadata.name.clone().unwrap())
            .collect();
        let digest = hex(&Sha256::digest(&state));
        assert_eq!(
            names,
            [
                format!("s-policy-{}-1", &digest[..12]),
                "s-policy".to_string()
            ],
            "parts first (named by the checksum), head last"
        );
        assert_eq!(referenced_parts("s", &maps), vec![names[0].clone()]);
        assert!(referenced_parts("s", &[]).is_empty());
        // After an update to another state: the old part and an orphan of a writer stopped
        // half-way are stale; the new head's part and the head are not.
        let mut listed = maps.clone();
        let mut orphan = maps[0].clone();
        orphan.metadata.name = Some("s-policy-0123456789ab-1".into());
        listed.push(orphan);
        let newer = to_config_maps("s", "ns", &[7u8; 10]);
        let kept = referenced_parts("s", &newer);
        assert!(kept.is_empty(), "a small state is the head alone");
        assert_eq!(
            stale_parts("s", &listed, &kept),
            [names[0].clone(), "s-policy-0123456789ab-1".into()]
        );
        assert_eq!(
            stale_parts("s", &listed, &referenced_parts("s", &maps)),
            ["s-policy-0123456789ab-1".to_string()]
        );
        for m in &maps {
            let bytes = serde_json::to_vec(m).unwrap().len();
            assert!(
                bytes < 1024 * 1024 * 4 / 3,
                "{bytes} bytes as JSON (base64)"
            );
        }
        assert_eq!(from_config_maps("s", &maps).unwrap(), state);
        assert!(strategy::restore(&space, &spec, &state).is_ok());
    }

    #[test]
    fn half_written_or_missing_parts_are_not_trusted() {
        let a: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
        let b: Vec<u8> = a.iter().map(|x| x.wrapping_add(1)).collect();
        // Write order: [part 1, part 2, ...] reversed to [part 2, part 1, head].
        let old = to_config_maps("s", "ns", &a);
        let new = to_config_maps("s", "ns", &b);
        assert_eq!(new[2].metadata.name.as_deref(), Some("s-policy"));
        assert_ne!(
            old[0].metadata.name, new[0].metadata.name,
            "parts never overwritten"
        );
        // A writer stopped before the head: the old head still reads its own parts.
        let stopped: Vec<ConfigMap> = old.iter().chain(&new[..2]).cloned().collect();
        assert_eq!(from_config_maps("s", &stopped).unwrap(), a);
        // After the head: the new state, whatever old parts remain.
        let done: Vec<ConfigMap> = old[..2].iter().chain(&new).cloned().collect();
        assert_eq!(from_config_maps("s", &done).unwrap(), b);
        // A part of the wrong content under the right name: the checksum tells.
        let mut forged = new.clone();
        forged[1].binary_data = old[1].binary_data.clone();
        assert_eq!(
            from_config_maps("s", &forged),
            Err(StoreError::Mismatch("sha256"))
        );
        assert_eq!(
            from_config_maps("s", &new[1..]),
            Err(StoreError::MissingPart(2))
        );
        assert_eq!(from_config_maps("s", &[]), Err(StoreError::MissingPart(0)));
        let mut bare = new[2].clone();
        bare.metadata.annotations = None;
        assert_eq!(
            from_config_maps("s", &[bare]),
            Err(StoreError::BadAnnotation(PARTS_ANNOTATION))
        );
        assert_eq!(
            from_config_maps("e", &to_config_maps("e", "ns", &[])).unwrap(),
            Vec::<u8>::new()
        );
    }
}
