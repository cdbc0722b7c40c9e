//! The strategy state of a search in ConfigMaps.
//!
//! A controller's state is stored as a checkpoint plus a journal. The checkpoint (the whole
//! state, weights and Adam moments included: about 1.05 MB at 100 LSTM units) is split into
//! parts named by its SHA-256 (`<search>-policy-<first 12 hex digits>-c<k>`, k = 1, 2, ...),
//! created once and never overwritten. The head ConfigMap `<search>-policy` names the
//! checkpoint (digest, part count, length in annotations) and holds the journal in
//! `data["journal.json"]`: the JSON state with the results told since the checkpoint (about
//! 100 bytes each; see `Strategy::save_journal`). Most writes are the head alone, a few KB;
//! every [`CHECKPOINT_RESULTS`] results a new checkpoint is written first. Strategies without
//! tensors (evolution, random search) and journals too large for the head are stored whole,
//! as below; a reader takes either form.
//!
//! The whole form: a ConfigMap holds at most 1 MiB
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

use crate::strategy::Strategy;

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
/// Annotation of a head holding a journal: SHA-256 (hex) of its checkpoint.
pub const CHECKPOINT_SHA256_ANNOTATION: &str = "nasop.dev/policy-checkpoint-sha256";
/// Annotation of a head holding a journal: number of parts of its checkpoint.
pub const CHECKPOINT_PARTS_ANNOTATION: &str = "nasop.dev/policy-checkpoint-parts";
/// Annotation of a head holding a journal: length of its checkpoint, bytes.
pub const CHECKPOINT_BYTES_ANNOTATION: &str = "nasop.dev/policy-checkpoint-bytes";
/// The key of the journal in a head's `data`.
pub const JOURNAL_KEY: &str = "journal.json";
/// Results told between checkpoints. A restore tells them again (a PPO update per
/// `batchSize` of them, about 10-30 ms each on one core: 2-6 s at batch size 5); the head then
/// holds at most about 100 KB of them.
pub const CHECKPOINT_RESULTS: usize = 1000;
/// The largest journal written to the head, bytes (a larger one, e.g. a dedupe set of tens of
/// thousands of genotypes, makes the state be stored whole, in parts).
pub const MAX_JOURNAL_BYTES: usize = 512 * 1024;

/// Where a checkpoint is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// SHA-256 (hex) of its bytes.
    pub sha256: String,
    /// Number of parts (ConfigMaps).
    pub parts: usize,
    /// Length, bytes.
    pub bytes: usize,
}

/// What one write of a search's state stores.
#[derive(Debug, PartialEq)]
pub enum Write {
    /// The head alone: the journal on the current checkpoint.
    Journal {
        /// The checkpoint (unchanged).
        checkpoint: Checkpoint,
        /// The journal bytes (JSON).
        journal: Vec<u8>,
    },
    /// A new checkpoint's parts, then the head with an empty journal on it.
    Checkpoint {
        /// The new checkpoint.
        checkpoint: Checkpoint,
        /// Its bytes.
        bytes: Vec<u8>,
        /// The journal bytes (JSON).
        journal: Vec<u8>,
    },
    /// The whole state in parts, the head holding part 0.
    Whole(Vec<u8>),
}

/// What to write for `strategy`, whose state was last stored on checkpoint `current`
/// (`None`: stored whole, or not at all). Marks a new checkpoint in the strategy when one is
/// due: every [`CHECKPOINT_RESULTS`] results, or when there is none. If the write fails the
/// strategy must not be used further (the operator drops it and reads the stored state).
pub fn plan_write(strategy: &mut dyn Strategy, current: Option<&Checkpoint>) -> Write {
    if let (Some(told), Some(current)) = (strategy.journal_len(), current) {
        if told < CHECKPOINT_RESULTS {
            if let Some(journal) = strategy.save_journal() {
                if journal.len() <= MAX_JOURNAL_BYTES {
                    return Write::Journal {
                        checkpoint: current.clone(),
                        journal,
                    };
                }
            }
        }
    }
    let bytes = strategy.checkpoint();
    match strategy.save_journal() {
        Some(journal) if journal.len() <= MAX_JOURNAL_BYTES => Write::Checkpoint {
            checkpoint: Checkpoint {
                sha256: hex(&Sha256::digest(&bytes)),
                parts: split(&bytes).len(),
                bytes: bytes.len(),
            },
            bytes,
            journal,
        },
        _ => Write::Whole(bytes),
    }
}

/// The name of part `k` (1, 2, ...) of the checkpoint whose SHA-256 is `digest` (hex).
pub fn checkpoint_part_name(search: &str, digest: &str, k: usize) -> String {
    format!("{search}-policy-{}-c{k}", &digest[..digest.len().min(12)])
}

/// The ConfigMaps of a checkpoint's `bytes` (parts 1, 2, ...; none is the head).
pub fn checkpoint_maps(
    search: &str,
    namespace: &str,
    checkpoint: &Checkpoint,
    bytes: &[u8],
) -> Vec<ConfigMap> {
    split(bytes)
        .into_iter()
        .enumerate()
        .map(|(i, chunk)| {
            let name = checkpoint_part_name(search, &checkpoint.sha256, i + 1);
            with_part(policy_map(search, namespace, name, None), chunk)
        })
        .collect()
}

/// The head holding `journal` on `checkpoint`.
///
/// # Panics
/// When `journal` is not UTF-8 (journals are JSON).
pub fn journal_head(
    search: &str,
    namespace: &str,
    checkpoint: &Checkpoint,
    journal: &[u8],
) -> ConfigMap {
    let mut map = policy_map(
        search,
        namespace,
        head_name(search),
        Some(BTreeMap::from([
            (
                CHECKPOINT_SHA256_ANNOTATION.to_string(),
                checkpoint.sha256.clone(),
            ),
            (
                CHECKPOINT_PARTS_ANNOTATION.to_string(),
                checkpoint.parts.to_string(),
            ),
            (
                CHECKPOINT_BYTES_ANNOTATION.to_string(),
                checkpoint.bytes.to_string(),
            ),
        ])),
    );
    map.data = Some(BTreeMap::from([(
        JOURNAL_KEY.to_string(),
        String::from_utf8(journal.to_vec()).expect("a journal is JSON"),
    )]));
    map
}

/// The checkpoint the head among `maps` names, if it holds a journal.
///
/// # Errors
/// [`StoreError::BadAnnotation`] for a head naming a checkpoint with malformed annotations.
pub fn head_checkpoint(search: &str, maps: &[ConfigMap]) -> Result<Option<Checkpoint>, StoreError> {
    let Some(a) = maps
        .iter()
        .find(|m| m.metadata.name.as_deref() == Some(head_name(search).as_str()))
        .and_then(|h| h.metadata.annotations.as_ref())
    else {
        return Ok(None);
    };
    let Some(sha256) = a.get(CHECKPOINT_SHA256_ANNOTATION) else {
        return Ok(None);
    };
    let number = |key: &'static str| {
        a.get(key)
            .and_then(|v| v.parse::<usize>().ok())
            .ok_or(StoreError::BadAnnotation(key))
    };
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(StoreError::BadAnnotation(CHECKPOINT_SHA256_ANNOTATION));
    }
    Ok(Some(Checkpoint {
        sha256: sha256.clone(),
        parts: number(CHECKPOINT_PARTS_ANNOTATION)?,
        bytes: number(CHECKPOINT_BYTES_ANNOTATION)?,
    }))
}

/// A stored state as read back.
#[derive(Debug, PartialEq)]
pub enum Stored {
    /// Stored whole.
    Whole(Vec<u8>),
    /// A checkpoint and the head's journal on it.
    Journal {
        /// Where the checkpoint is.
        checkpoint: Checkpoint,
        /// The checkpoint's bytes, checked against its length and SHA-256.
        bytes: Vec<u8>,
        /// The journal.
        journal: Vec<u8>,
    },
}

/// Reads the state stored in `maps` (the ConfigMaps listed by the search's label), in either
/// form.
///
/// # Errors
/// [`StoreError`] for a missing part, head data or annotation, or a checkpoint that does not
/// match its recorded length and checksum.
pub fn read_stored(search: &str, maps: &[ConfigMap]) -> Result<Stored, StoreError> {
    let Some(checkpoint) = head_checkpoint(search, maps)? else {
        return from_config_maps(search, maps).map(Stored::Whole);
    };
    let part = |name: &str| {
        maps.iter()
            .find(|m| m.metadata.name.as_deref() == Some(name))
    };
    let journal = part(&head_name(search))
        .and_then(|h| h.data.as_ref())
        .and_then(|d| d.get(JOURNAL_KEY))
        .ok_or(StoreError::MissingPart(0))?
        .as_bytes()
        .to_vec();
    let mut bytes = Vec::with_capacity(checkpoint.bytes.min(64 * 1024 * 1024));
    for k in 1..=checkpoint.parts {
        let chunk = part(&checkpoint_part_name(search, &checkpoint.sha256, k))
            .and_then(part_data)
            .ok_or(StoreError::MissingPart(k))?;
        bytes.extend_from_slice(chunk);
    }
    verify(&bytes, checkpoint.bytes, &checkpoint.sha256)?;
    Ok(Stored::Journal {
        checkpoint,
        bytes,
        journal,
    })
}

/// A policy ConfigMap's metadata: labelled with the search and the manager.
fn policy_map(
    search: &str,
    namespace: &str,
    name: String,
    annotations: Option<BTreeMap<String, String>>,
) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([
                (
                    nasop_crds::api::labels::SEARCH.to_string(),
                    search.to_string(),
                ),
                (
                    "app.kubernetes.io/managed-by".to_string(),
                    "nasop".to_string(),
                ),
            ])),
            annotations,
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    }
}

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
    if let Ok(Some(c)) = head_checkpoint(search, maps) {
        return (1..=c.parts)
            .map(|k| checkpoint_part_name(search, &c.sha256, k))
            .collect();
    }
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
    let chunks = split(state);
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
            let name = part_name(search, &digest, k);
            with_part(policy_map(search, namespace, name, annotations), chunk)
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
        state.extend_from_slice(part_data(cm).ok_or(StoreError::MissingPart(k))?);
    }
    verify(&state, length, &digest)?;
    Ok(state)
}

/// `state` in parts of at most [`PART_BYTES`] (an empty state is one empty part).
fn split(state: &[u8]) -> Vec<&[u8]> {
    if state.is_empty() {
        vec![&[][..]]
    } else {
        state.chunks(PART_BYTES).collect()
    }
}

/// `map` holding `chunk` as its part's data.
fn with_part(mut map: ConfigMap, chunk: &[u8]) -> ConfigMap {
    map.binary_data = Some(BTreeMap::from([(
        DATA_KEY.to_string(),
        ByteString(chunk.to_vec()),
    )]));
    map
}

/// The part's data a ConfigMap holds, if any.
fn part_data(map: &ConfigMap) -> Option<&[u8]> {
    map.binary_data
        .as_ref()
        .and_then(|d| d.get(DATA_KEY))
        .map(|b| b.0.as_slice())
}

/// Checks reassembled bytes against the recorded length and SHA-256 (hex).
fn verify(bytes: &[u8], length: usize, sha256: &str) -> Result<(), StoreError> {
    if bytes.len() != length {
        return Err(StoreError::Mismatch("length"));
    }
    if hex(&Sha256::digest(bytes)) != sha256 {
        return Err(StoreError::Mismatch("sha256"));
    }
    Ok(())
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

    fn ppo(space: &nasop_crds::SearchSpace) -> (StrategySpec, Box<dyn Strategy>) {
        let spec = StrategySpec {
            algorithm: Algorithm::Ppo,
            seed: Some(1),
            dedupe: false,
            controller: None,
            evolution: None,
        };
        let s = strategy::build(space, &spec, 0).unwrap();
        (spec, s)
    }

    /// Asks `n` children and tells each a reward.
    fn run(s: &mut dyn Strategy, n: usize) {
        for p in s.ask(n) {
            s.tell(p.id, p.decisions.iter().sum::<usize>() as f64 / 30.0)
                .unwrap();
        }
    }

    #[test]
    fn a_controller_is_stored_as_a_checkpoint_and_small_journals_on_it() {
        let space = SearchSpaceSpec::Nb201(Nb201SpaceSpec::default())
            .build()
            .unwrap();
        let (spec, mut s) = ppo(&space);
        // No checkpoint yet: one is written, with an empty journal.
        let Write::Checkpoint {
            checkpoint,
            bytes,
            journal,
        } = plan_write(s.as_mut(), None)
        else {
            panic!("a first checkpoint")
        };
        assert_eq!(s.journal_len(), Some(0));
        assert_eq!(checkpoint.parts, 2);
        assert_eq!(checkpoint.bytes, bytes.len());
        assert!(
            bytes.len() > 1_000_000 && journal.len() < 2_000,
            "{}",
            journal.len()
        );
        // 40 results later: the head alone, about 100 bytes per result.
        run(s.as_mut(), 40);
        let Write::Journal {
            checkpoint: same,
            journal,
        } = plan_write(s.as_mut(), Some(&checkpoint))
        else {
            panic!("a journal")
        };
        assert_eq!(same, checkpoint);
        assert!(journal.len() < 2_000 + 40 * 130, "{} bytes", journal.len());
        // Stored and read back: the same controller.
        let mut maps = checkpoint_maps("s", "ns", &checkpoint, &bytes);
        let names: Vec<_> = maps
            .iter()
            .map(|m| m.metadata.name.clone().unwrap())
            .collect();
        let d = &checkpoint.sha256[..12];
        assert_eq!(
            names,
            [format!("s-policy-{d}-c1"), format!("s-policy-{d}-c2")]
        );
        let head = journal_head("s", "ns", &checkpoint, &journal);
        assert!(
            serde_json::to_vec(&head).unwrap().len() < 16 * 1024,
            "a head is written as a few KB"
        );
        maps.push(head.clone());
        assert_eq!(referenced_parts("s", &maps), names);
        assert_eq!(head_checkpoint("s", &maps), Ok(Some(checkpoint.clone())));
        let Ok(Stored::Journal {
            bytes: read,
            journal: read_journal,
            ..
        }) = read_stored("s", &maps)
        else {
            panic!("a journal")
        };
        assert_eq!((&read, &read_journal), (&bytes, &journal));
        let back = strategy::restore_journal(&space, &spec, &read, &read_journal).unwrap();
        assert_eq!(back.save(), s.save());
        // A checkpoint part missing or altered is never trusted.
        assert_eq!(
            read_stored("s", &maps[1..]),
            Err(StoreError::MissingPart(1))
        );
        let mut altered = maps.clone();
        altered[1] = checkpoint_maps("s", "ns", &checkpoint, &vec![0u8; bytes.len()]).remove(1);
        assert_eq!(
            read_stored("s", &altered),
            Err(StoreError::Mismatch("sha256"))
        );
        let mut bare = maps.clone();
        bare[2]
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .remove(CHECKPOINT_PARTS_ANNOTATION);
        assert_eq!(
            read_stored("s", &bare),
            Err(StoreError::BadAnnotation(CHECKPOINT_PARTS_ANNOTATION))
        );
        // Replacing an older state stored whole: its parts are stale, the checkpoint's kept.
        let mut listed = to_config_maps("s", "ns", &bytes);
        listed.pop();
        listed.extend(maps.iter().cloned());
        assert_eq!(
            stale_parts(
                "s",
                &listed,
                &referenced_parts("s", std::slice::from_ref(&head))
            ),
            [format!("s-policy-{}-1", &checkpoint.sha256[..12])]
        );
        // CHECKPOINT_RESULTS results after the checkpoint, a new one is due.
        run(s.as_mut(), CHECKPOINT_RESULTS - 40);
        assert_eq!(s.journal_len(), Some(CHECKPOINT_RESULTS));
        let Write::Checkpoint {
            checkpoint: next, ..
        } = plan_write(s.as_mut(), Some(&checkpoint))
        else {
            panic!("a new checkpoint")
        };
        assert_ne!(next.sha256, checkpoint.sha256);
        assert_eq!(s.journal_len(), Some(0));
    }

    #[test]
    fn strategies_without_tensors_are_stored_whole() {
        let space = SearchSpaceSpec::Nb201(Nb201SpaceSpec::default())
            .build()
            .unwrap();
        for algorithm in [Algorithm::Random, Algorithm::Evolution] {
            let spec = StrategySpec {
                algorithm,
                seed: Some(1),
                dedupe: true,
                controller: None,
                evolution: None,
            };
            let mut s = strategy::build(&space, &spec, 0).unwrap();
            run(s.as_mut(), 5);
            let Write::Whole(bytes) = plan_write(s.as_mut(), None) else {
                panic!("{algorithm:?}: whole")
            };
            let maps = to_config_maps("s", "ns", &bytes);
            assert_eq!(head_checkpoint("s", &maps), Ok(None));
            assert_eq!(read_stored("s", &maps), Ok(Stored::Whole(bytes)));
        }
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
