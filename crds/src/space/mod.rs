//! Search spaces and genotypes.
//!
//! Three spaces, all first-class (DESIGN.md section 3):
//! - [`nasnet`]: the NASNet cell space (Zoph et al. 2018, arXiv 1707.07012, Sec. 3),
//! - [`mnasnet`]: MnasNet's factorized hierarchical space (Tan et al. 2019, arXiv 1807.11626,
//!   Sec. 4.1),
//! - [`nb201`]: the NAS-Bench-201 cell space (Dong & Yang 2020, arXiv 2001.00326).
//!
//! Every space is a product of categorical decisions (the view the controller policy samples
//! from, [`Decision`]); a genotype maps to exactly one decision-index vector and back
//! ([`SearchSpace::encode`], [`SearchSpace::decode`]). Uniform sampling and single-decision
//! mutation are written once, on that view ([`CategoricalSpace`]).
//!
//! A genotype has one canonical string form (`Display` / `FromStr`), a JSON form (serde and
//! schemars, used in the `ChildTrial` spec) and a stable hash ([`GenotypeHash`], the dedupe key).

mod error;
pub mod mnasnet;
pub mod nasnet;
pub mod nb201;
pub mod rng;

use std::fmt;
use std::str::FromStr;

use num_bigint::BigUint;
use rand_core::RngCore;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use error::{GenotypeError, SpaceError};
pub use rng::uniform_index;

use mnasnet::{MnasnetGenotype, MnasnetSpace, MnasnetSpaceSpec};
use nasnet::{NasnetGenotype, NasnetSpace, NasnetSpaceSpec};
use nb201::{Nb201Genotype, Nb201Space, Nb201SpaceSpec};

/// Declares a closed set of named values (ops, combine methods, ...) with its canonical names.
///
/// The order of the variants is the canonical order: it is the order of the choices of the
/// decision that picks among them.
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident => $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
            serde::Serialize, serde::Deserialize, schemars::JsonSchema,
        )]
        $vis enum $name {
            $( $(#[$vmeta])* #[serde(rename = $text)] $variant ),+
        }

        impl $name {
            /// Every value, in canonical order.
            pub const ALL: &'static [Self] = &[ $( Self::$variant ),+ ];

            /// The canonical name (as in the genotype string and the JSON form).
            pub const fn name(self) -> &'static str {
                match self { $( Self::$variant => $text ),+ }
            }

            /// Parses a canonical name.
            pub fn from_name(text: &str) -> Option<Self> {
                match text { $( $text => Some(Self::$variant), )+ _ => None }
            }

            /// All canonical names joined by `", "`, for error messages.
            pub fn allowed() -> String {
                [ $( $text ),+ ].join(", ")
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}
pub(crate) use named_enum;

/// Implements `JsonSchema` for a validated type by delegating to the unvalidated form it is
/// deserialized from (`#[serde(try_from = ...)]`), so the schema describes the JSON form.
macro_rules! schema_as {
    ($ty:ty, $raw:ty, $name:literal) => {
        impl schemars::JsonSchema for $ty {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                $name.into()
            }

            fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
                <$raw as schemars::JsonSchema>::json_schema(generator)
            }
        }
    };
}
pub(crate) use schema_as;

named_enum! {
    /// Which search space a genotype or a search belongs to.
    pub enum SpaceKind {
        /// The NASNet cell space (arXiv 1707.07012).
        Nasnet => "NASNet",
        /// MnasNet's factorized hierarchical space (arXiv 1807.11626).
        Mnasnet => "MnasNet",
        /// The NAS-Bench-201 cell space (arXiv 2001.00326).
        Nb201 => "NB201",
    }
}

/// One categorical decision of the decision view: the controller samples one choice per
/// decision, in order, from a softmax over `choices.len()` logits.
///
/// Decisions with a single choice are not listed (they carry no information).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Where the decision sits and what it picks, e.g. `normal.block2.inputA`.
    pub name: String,
    /// Labels of the choices, in index order (the canonical names used in genotype strings).
    pub choices: Vec<String>,
}

impl Decision {
    pub(crate) fn new(name: impl Into<String>, choices: Vec<String>) -> Self {
        Self {
            name: name.into(),
            choices,
        }
    }
}

/// A search space seen as a product of categorical decisions.
///
/// Implementors give the decision list and the two-way mapping between genotypes and
/// decision-index vectors; sampling, mutation and the space size are derived from that view,
/// once for all spaces.
pub trait CategoricalSpace {
    /// The genotype type of this space.
    type Genotype;

    /// The decisions, in the order the controller samples them.
    fn decisions(&self) -> &[Decision];

    /// Genotype to decision indices (one per entry of [`Self::decisions`]).
    ///
    /// # Errors
    /// [`GenotypeError`] naming the cell/block/edge and field whose value is not one of this
    /// space's choices.
    fn encode(&self, genotype: &Self::Genotype) -> Result<Vec<usize>, GenotypeError>;

    /// Decision indices to genotype.
    ///
    /// # Errors
    /// [`GenotypeError::Decisions`] when the vector has the wrong length or an index is out of
    /// range.
    fn decode(&self, decisions: &[usize]) -> Result<Self::Genotype, GenotypeError>;

    /// Number of distinct genotypes: the product of the number of choices of every decision.
    fn size(&self) -> BigUint {
        self.decisions().iter().fold(BigUint::from(1u32), |acc, d| {
            acc * BigUint::from(d.choices.len())
        })
    }

    /// A genotype drawn uniformly from the space (each decision uniform and independent).
    fn sample<R: RngCore + ?Sized>(&self, rng: &mut R) -> Self::Genotype {
        let indices: Vec<usize> = self
            .decisions()
            .iter()
            .map(|d| uniform_index(rng, d.choices.len()))
            .collect();
        self.decode(&indices)
            .expect("indices drawn within each decision's range always decode")
    }

    /// Single-decision mutation (regularized evolution, Real et al. 2019): see
    /// [`mutate_decisions`]. A space where no decision has two choices returns the parent.
    ///
    /// # Errors
    /// As [`Self::encode`], when `parent` lies outside this space.
    fn mutate<R: RngCore + ?Sized>(
        &self,
        parent: &Self::Genotype,
        rng: &mut R,
    ) -> Result<Self::Genotype, GenotypeError> {
        let mut indices = self.encode(parent)?;
        mutate_decisions(self.decisions(), &mut indices, rng);
        self.decode(&indices)
    }
}

/// Changes one decision of `indices`, chosen uniformly among those with at least two choices,
/// to a different choice chosen uniformly (Real et al. 2019, arXiv 1802.01548 Sec. 2).
/// Returns the index of the changed decision, or `None` when no decision can change.
///
/// # Panics
/// When `indices` is shorter than `decisions` or holds an index out of its decision's range.
pub fn mutate_decisions<R: RngCore + ?Sized>(
    decisions: &[Decision],
    indices: &mut [usize],
    rng: &mut R,
) -> Option<usize> {
    let mutable = decisions.iter().filter(|d| d.choices.len() > 1).count();
    if mutable == 0 {
        return None;
    }
    let nth = uniform_index(rng, mutable);
    let which = decisions
        .iter()
        .enumerate()
        .filter(|(_, d)| d.choices.len() > 1)
        .nth(nth)
        .map(|(i, _)| i)
        .expect("nth < mutable");
    let n = decisions[which].choices.len();
    assert!(indices[which] < n, "choice index in range");
    let mut value = uniform_index(rng, n - 1);
    if value >= indices[which] {
        value += 1;
    }
    indices[which] = value;
    Some(which)
}

/// Splits `text` at every `sep`, giving each piece, trimmed of surrounding white space, with
/// its byte offset (`base` + position in `text`), for parse errors that point at the mistake.
pub(crate) fn split_with_offsets(text: &str, base: usize, sep: char) -> Vec<(usize, &str)> {
    fn trimmed(base: usize, start: usize, piece: &str) -> (usize, &str) {
        let lead = piece.len() - piece.trim_start().len();
        (base + start + lead, piece.trim())
    }
    let mut pieces = Vec::new();
    let mut start = 0;
    for (i, _) in text.match_indices(sep) {
        pieces.push(trimmed(base, start, &text[start..i]));
        start = i + sep.len_utf8();
    }
    pieces.push(trimmed(base, start, &text[start..]));
    pieces
}

/// A number written in plain decimal digits (no sign, no white space), if it fits in `u64`.
pub(crate) fn parse_digits(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Checks a decision-index vector against a decision list.
pub(crate) fn check_decisions(
    space: SpaceKind,
    decisions: &[Decision],
    indices: &[usize],
) -> Result<(), GenotypeError> {
    if indices.len() != decisions.len() {
        return Err(GenotypeError::Decisions {
            space,
            message: format!(
                "expected {} decision indices, found {}",
                decisions.len(),
                indices.len()
            ),
        });
    }
    for (i, (d, &v)) in decisions.iter().zip(indices).enumerate() {
        if v >= d.choices.len() {
            return Err(GenotypeError::Decisions {
                space,
                message: format!(
                    "decision {i} ({}) = {v} is out of range; allowed values: 0..={}",
                    d.name,
                    d.choices.len() - 1
                ),
            });
        }
    }
    Ok(())
}

/// A child architecture of any of the three spaces.
///
/// JSON form: an object with exactly one key naming the space (`nasnet`, `mnasnet` or `nb201`)
/// whose value is that space's genotype. String form: the space's canonical string (the three
/// forms are distinguishable by their first characters, so [`FromStr`] needs no hint).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Genotype {
    /// A NASNet genotype (normal and reduction cell).
    Nasnet(NasnetGenotype),
    /// A MnasNet genotype (one entry per skeleton block).
    Mnasnet(MnasnetGenotype),
    /// A NAS-Bench-201 cell.
    Nb201(Nb201Genotype),
}

/// Names accepted by [`Genotype::known`] (and by [`FromStr`] for [`Genotype`]), with the
/// string each stands for.
pub const KNOWN_GENOTYPES: &[(&str, &str)] = &[
    ("nasnet-a", nasnet::NASNET_A),
    ("mnasnet-a1", mnasnet::MNASNET_A1),
    ("nb201-optimum", nb201::NB201_OPTIMUM),
];

impl Genotype {
    /// The space this genotype belongs to.
    pub fn kind(&self) -> SpaceKind {
        match self {
            Self::Nasnet(_) => SpaceKind::Nasnet,
            Self::Mnasnet(_) => SpaceKind::Mnasnet,
            Self::Nb201(_) => SpaceKind::Nb201,
        }
    }

    /// A published genotype by name (`nasnet-a`, `mnasnet-a1`, `nb201-optimum`; case-insensitive).
    pub fn known(name: &str) -> Option<Self> {
        KNOWN_GENOTYPES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, s)| s.parse().expect("known genotype strings parse"))
    }

    /// Checks the rules every genotype of its space obeys, independent of a search space's
    /// choices (input indices in range, filter chains consistent, ...). Genotypes built by
    /// parsing, deserializing or decoding are always structurally valid; this re-checks
    /// values built by hand.
    ///
    /// # Errors
    /// [`GenotypeError`] naming the location, field, bad value and allowed values.
    pub fn validate(&self) -> Result<(), GenotypeError> {
        match self {
            Self::Nasnet(g) => g.validate(),
            Self::Mnasnet(g) => g.validate(),
            Self::Nb201(g) => g.validate(),
        }
    }

    /// The stable dedupe key: the same child network gives the same hash, on every run and
    /// machine. It is the first 64 bits of SHA-256 over `"<space>:<key>"`, where the key is the
    /// canonical string of the genotype with operand order normalized where the network does
    /// not depend on it (the two inputs of a NASNet block combined by `add`).
    pub fn hash(&self) -> GenotypeHash {
        let key = match self {
            Self::Nasnet(g) => g.dedupe_key(),
            Self::Mnasnet(g) => g.to_string(),
            Self::Nb201(g) => g.to_string(),
        };
        GenotypeHash::of(self.kind(), &key)
    }
}

impl fmt::Display for Genotype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Nasnet(g) => g.fmt(f),
            Self::Mnasnet(g) => g.fmt(f),
            Self::Nb201(g) => g.fmt(f),
        }
    }
}

impl FromStr for Genotype {
    type Err = GenotypeError;

    /// Parses any space's canonical string (or a name of [`KNOWN_GENOTYPES`]).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        if let Some((_, known)) = KNOWN_GENOTYPES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(text))
        {
            return known.parse();
        }
        if text.starts_with('|') {
            text.parse().map(Self::Nb201)
        } else if nasnet::KEYS.iter().any(|k| {
            text.split_once('=')
                .is_some_and(|(key, _)| key.trim() == *k)
        }) {
            text.parse().map(Self::Nasnet)
        } else if text.starts_with('r') && text[1..].starts_with(|c: char| c.is_ascii_digit()) {
            text.parse().map(Self::Mnasnet)
        } else {
            Err(GenotypeError::UnknownForm {
                input: error::shorten(text, 80),
            })
        }
    }
}

/// The stable hash of a genotype: 16 lowercase hex digits (the first 64 bits of a SHA-256).
///
/// Valid as a Kubernetes label value; used as the dedupe key and the latency-probe cache key.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(transparent)]
pub struct GenotypeHash(String);

impl GenotypeHash {
    fn of(kind: SpaceKind, key: &str) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(kind.name().as_bytes());
        hasher.update(b":");
        hasher.update(key.as_bytes());
        let digest = hasher.finalize();
        Self(digest[..8].iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for GenotypeHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The parameters of a search space as users write them (`spec.searchSpace` of an
/// `ArchitectureSearch`): exactly one key naming the space.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SearchSpaceSpec {
    /// The NASNet cell space.
    Nasnet(NasnetSpaceSpec),
    /// MnasNet's factorized hierarchical space.
    Mnasnet(MnasnetSpaceSpec),
    /// The NAS-Bench-201 cell space.
    Nb201(Nb201SpaceSpec),
}

impl SearchSpaceSpec {
    /// The space kind.
    pub fn kind(&self) -> SpaceKind {
        match self {
            Self::Nasnet(_) => SpaceKind::Nasnet,
            Self::Mnasnet(_) => SpaceKind::Mnasnet,
            Self::Nb201(_) => SpaceKind::Nb201,
        }
    }

    /// Validates the parameters and builds the space.
    ///
    /// # Errors
    /// [`SpaceError`] naming the field (`searchSpace.<kind>.<field>`) and the allowed values.
    pub fn build(&self) -> Result<SearchSpace, SpaceError> {
        Ok(match self {
            Self::Nasnet(s) => SearchSpace::Nasnet(NasnetSpace::new(s)?),
            Self::Mnasnet(s) => SearchSpace::Mnasnet(MnasnetSpace::new(s)?),
            Self::Nb201(s) => SearchSpace::Nb201(Nb201Space::new(s)?),
        })
    }
}

/// A validated search space of any kind, with its decision view.
#[derive(Clone, Debug)]
pub enum SearchSpace {
    /// The NASNet cell space.
    Nasnet(NasnetSpace),
    /// MnasNet's factorized hierarchical space.
    Mnasnet(MnasnetSpace),
    /// The NAS-Bench-201 cell space.
    Nb201(Nb201Space),
}

macro_rules! dispatch {
    ($self:expr, $s:ident => $body:expr) => {
        match $self {
            SearchSpace::Nasnet($s) => $body,
            SearchSpace::Mnasnet($s) => $body,
            SearchSpace::Nb201($s) => $body,
        }
    };
}

impl SearchSpace {
    /// The space kind.
    pub fn kind(&self) -> SpaceKind {
        match self {
            Self::Nasnet(_) => SpaceKind::Nasnet,
            Self::Mnasnet(_) => SpaceKind::Mnasnet,
            Self::Nb201(_) => SpaceKind::Nb201,
        }
    }

    /// The decisions, in sampling order.
    pub fn decisions(&self) -> &[Decision] {
        dispatch!(self, s => s.decisions())
    }

    /// Number of distinct genotypes in the space.
    pub fn size(&self) -> BigUint {
        dispatch!(self, s => s.size())
    }

    fn mismatch(&self, genotype: &Genotype) -> GenotypeError {
        GenotypeError::WrongSpace {
            expected: self.kind(),
            found: genotype.kind(),
        }
    }

    /// Genotype to decision indices.
    ///
    /// # Errors
    /// [`GenotypeError::WrongSpace`] for a genotype of another space, or the error of the space's
    /// encoder naming the field whose value is not one of the space's choices.
    pub fn encode(&self, genotype: &Genotype) -> Result<Vec<usize>, GenotypeError> {
        match (self, genotype) {
            (Self::Nasnet(s), Genotype::Nasnet(g)) => s.encode(g),
            (Self::Mnasnet(s), Genotype::Mnasnet(g)) => s.encode(g),
            (Self::Nb201(s), Genotype::Nb201(g)) => s.encode(g),
            _ => Err(self.mismatch(genotype)),
        }
    }

    /// Decision indices to genotype.
    ///
    /// # Errors
    /// [`GenotypeError::Decisions`] on a wrong length or an out-of-range index.
    pub fn decode(&self, decisions: &[usize]) -> Result<Genotype, GenotypeError> {
        Ok(match self {
            Self::Nasnet(s) => Genotype::Nasnet(s.decode(decisions)?),
            Self::Mnasnet(s) => Genotype::Mnasnet(s.decode(decisions)?),
            Self::Nb201(s) => Genotype::Nb201(s.decode(decisions)?),
        })
    }

    /// Checks that a genotype lies in this space.
    ///
    /// # Errors
    /// As [`Self::encode`].
    pub fn validate(&self, genotype: &Genotype) -> Result<(), GenotypeError> {
        self.encode(genotype).map(|_| ())
    }

    /// A genotype drawn uniformly from the space.
    pub fn sample<R: RngCore + ?Sized>(&self, rng: &mut R) -> Genotype {
        match self {
            Self::Nasnet(s) => Genotype::Nasnet(s.sample(rng)),
            Self::Mnasnet(s) => Genotype::Mnasnet(s.sample(rng)),
            Self::Nb201(s) => Genotype::Nb201(s.sample(rng)),
        }
    }

    /// Single-decision mutation of `parent`.
    ///
    /// # Errors
    /// As [`Self::encode`].
    pub fn mutate<R: RngCore + ?Sized>(
        &self,
        parent: &Genotype,
        rng: &mut R,
    ) -> Result<Genotype, GenotypeError> {
        match (self, parent) {
            (Self::Nasnet(s), Genotype::Nasnet(g)) => s.mutate(g, rng).map(Genotype::Nasnet),
            (Self::Mnasnet(s), Genotype::Mnasnet(g)) => s.mutate(g, rng).map(Genotype::Mnasnet),
            (Self::Nb201(s), Genotype::Nb201(g)) => s.mutate(g, rng).map(Genotype::Nb201),
            _ => Err(self.mismatch(parent)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn spaces() -> Vec<SearchSpace> {
        vec![
            SearchSpaceSpec::Nasnet(NasnetSpaceSpec::default())
                .build()
                .unwrap(),
            SearchSpaceSpec::Mnasnet(MnasnetSpaceSpec::default())
                .build()
                .unwrap(),
            SearchSpaceSpec::Nb201(Nb201SpaceSpec::default())
                .build()
                .unwrap(),
        ]
    }

    #[test]
    fn known_genotypes_parse_by_name_and_round_trip() {
        for (name, text) in KNOWN_GENOTYPES {
            let by_name = Genotype::known(name).unwrap();
            let by_string: Genotype = text.parse().unwrap();
            assert_eq!(by_name, by_string);
            assert_eq!(by_string.to_string(), *text);
            assert_eq!(
                name.to_uppercase().parse::<Genotype>().unwrap(),
                by_name,
                "names are case-insensitive"
            );
        }
        assert_eq!(
            Genotype::known("nasnet-a").unwrap().kind(),
            SpaceKind::Nasnet
        );
        assert_eq!(
            Genotype::known("mnasnet-a1").unwrap().kind(),
            SpaceKind::Mnasnet
        );
        assert_eq!(
            Genotype::known("nb201-optimum").unwrap().kind(),
            SpaceKind::Nb201
        );
        assert!(Genotype::known("resnet-50").is_none());
    }

    #[test]
    fn unknown_string_form_is_rejected_with_the_three_forms_named() {
        let err = "resnet50".parse::<Genotype>().unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("resnet50"), "{msg}");
        assert!(
            msg.contains("normal=") && msg.contains('|') && msg.contains("r1_k3"),
            "{msg}"
        );
    }

    #[test]
    fn json_form_has_one_key_naming_the_space() {
        let g = Genotype::known("nb201-optimum").unwrap();
        let json = serde_json::to_value(&g).unwrap();
        let obj = json.as_object().unwrap();
        assert_eq!(obj.keys().collect::<Vec<_>>(), vec!["nb201"]);
        let back: Genotype = serde_json::from_value(json).unwrap();
        assert_eq!(back, g);
        for (name, _) in KNOWN_GENOTYPES {
            let g = Genotype::known(name).unwrap();
            let text = serde_json::to_string(&g).unwrap();
            assert_eq!(
                serde_json::from_str::<Genotype>(&text).unwrap(),
                g,
                "{name}"
            );
        }
    }

    #[test]
    fn hash_is_stable_and_hex() {
        let g = Genotype::known("nb201-optimum").unwrap();
        let h = g.hash();
        assert_eq!(h.as_str().len(), 16);
        assert!(h
            .as_str()
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        // SHA-256("NB201:" + canonical string), first 8 bytes. Pinned so that a change of the
        // hash scheme (which would break dedupe across operator upgrades) fails here.
        let mut hasher = Sha256::new();
        hasher.update(format!("NB201:{}", nb201::NB201_OPTIMUM).as_bytes());
        let expected: String = hasher.finalize()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(h.as_str(), expected);
        // Different spaces never share a hash input prefix.
        assert_ne!(
            Genotype::known("nasnet-a").unwrap().hash(),
            Genotype::known("mnasnet-a1").unwrap().hash()
        );
    }

    #[test]
    fn sampling_is_seeded_and_decodes_back() {
        for space in spaces() {
            let mut a = ChaCha8Rng::seed_from_u64(7);
            let mut b = ChaCha8Rng::seed_from_u64(7);
            let first: Vec<Genotype> = (0..20).map(|_| space.sample(&mut a)).collect();
            let again: Vec<Genotype> = (0..20).map(|_| space.sample(&mut b)).collect();
            assert_eq!(first, again, "{}: same seed, same samples", space.kind());
            let distinct: std::collections::HashSet<_> = first.iter().map(|g| g.hash()).collect();
            assert!(distinct.len() >= 19, "{}: samples vary", space.kind());
            for g in &first {
                let d = space.encode(g).unwrap();
                assert_eq!(&space.decode(&d).unwrap(), g);
                let text = g.to_string();
                assert_eq!(&text.parse::<Genotype>().unwrap(), g, "{text}");
                g.validate().unwrap();
            }
        }
    }

    #[test]
    fn mutation_changes_exactly_one_decision() {
        for space in spaces() {
            let mut rng = ChaCha8Rng::seed_from_u64(11);
            let mut parent = space.sample(&mut rng);
            for _ in 0..200 {
                let child = space.mutate(&parent, &mut rng).unwrap();
                let a = space.encode(&parent).unwrap();
                let b = space.encode(&child).unwrap();
                let changed = a.iter().zip(&b).filter(|(x, y)| x != y).count();
                assert_eq!(changed, 1, "{}", space.kind());
                parent = child;
            }
        }
    }

    #[test]
    fn mutation_reaches_every_choice_of_a_decision() {
        // NB201: 6 decisions x 5 choices; from one parent, 2,000 mutations hit all 6 x 4
        // neighbours (each has probability 1/24).
        let space = spaces().pop().unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let parent = space.sample(&mut rng);
        let neighbours: std::collections::HashSet<_> = (0..2000)
            .map(|_| space.mutate(&parent, &mut rng).unwrap().hash())
            .collect();
        assert_eq!(neighbours.len(), 24);
    }

    #[test]
    fn a_genotype_in_a_space_is_exactly_its_decisions() {
        // Encoding succeeds only when nothing is lost: decode(encode(g)) == g, for samples and
        // for the published genotypes (NASNet-A and MnasNet-A1 lie outside the default spaces).
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for space in spaces() {
            let mut genotypes: Vec<Genotype> = (0..50).map(|_| space.sample(&mut rng)).collect();
            genotypes.extend(
                KNOWN_GENOTYPES
                    .iter()
                    .map(|(n, _)| Genotype::known(n).unwrap()),
            );
            for g in genotypes {
                if let Ok(d) = space.encode(&g) {
                    assert_eq!(space.decode(&d).unwrap(), g, "{}: {g}", space.kind());
                }
            }
        }
        assert!(spaces()[0]
            .encode(&Genotype::known("nasnet-a").unwrap())
            .is_err());
        assert!(spaces()[1]
            .encode(&Genotype::known("mnasnet-a1").unwrap())
            .is_err());
        assert!(spaces()[2]
            .encode(&Genotype::known("nb201-optimum").unwrap())
            .is_ok());
    }

    #[test]
    fn white_space_around_separators_is_allowed_in_every_form() {
        let cases = [
            (
                " |none~0| + |none~0| none~1 | + |none~0|none~1|none~2| ",
                "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
            ),
            (
                "normal=|conv_3x3~0|identity~1| ; reduction = |conv_1x1~0| conv_1x1~1|",
                "normal=|conv_3x3~0|identity~1|;reduction=|conv_1x1~0|conv_1x1~1|",
            ),
            (
                "r1_k3_s11_e1_i32_o16 ,\tr1_k3_s11_e1_i16_o16",
                "r1_k3_s11_e1_i32_o16,r1_k3_s11_e1_i16_o16",
            ),
        ];
        for (text, canonical) in cases {
            let g: Genotype = text.parse().unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(g.to_string(), canonical);
        }
    }

    #[test]
    fn nasnet_keys_may_come_in_any_order() {
        let g: Genotype = "reduction=|conv_1x1~0|conv_1x1~1|;normal=|conv_3x3~0|identity~1|"
            .parse()
            .unwrap();
        assert_eq!(
            g.to_string(),
            "normal=|conv_3x3~0|identity~1|;reduction=|conv_1x1~0|conv_1x1~1|"
        );
    }

    #[test]
    fn empty_and_huge_values_are_shown_readably() {
        let err = "|~0|+|none~0|none~1|+|none~0|none~1|none~2|"
            .parse::<Genotype>()
            .unwrap_err();
        assert!(
            err.to_string().contains("op = \"\" is not allowed"),
            "{err}"
        );
        // Invisible characters are shown escaped.
        let err = "|none\u{1b}[31m~0|+|none~0|none~1|+|none~0|none~1|none~2|"
            .parse::<Genotype>()
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("op = \"none\\u{1b}[31m\" is not allowed"),
            "{err}"
        );
        let err = "|none\u{200b}~0|+|none~0|none~1|+|none~0|none~1|none~2|"
            .parse::<Genotype>()
            .unwrap_err();
        assert!(err.to_string().contains("op = \"none\\u{200b}\""), "{err}");
        // Huge tokens in syntax errors are cut too.
        let err = format!("r1_k3_s11_e1_i32_o16_{}", "q".repeat(100_000))
            .parse::<Genotype>()
            .unwrap_err();
        assert!(
            err.to_string().len() < 800,
            "{} bytes",
            err.to_string().len()
        );
        let huge = "x".repeat(100_000);
        let err = format!("|{huge}~0|+|none~0|none~1|+|none~0|none~1|none~2|")
            .parse::<Genotype>()
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.len() < 400, "{} bytes", msg.len());
        assert!(msg.contains("xxx..."), "{msg}");
        // A syntax error far into a long string shows the part around it.
        let blocks = ["|conv_3x3~0|identity~1|"; 8].join("+");
        let text = format!("normal={blocks};reduction={blocks}+|conv_3x3~0|identity-1|");
        let err = text.parse::<Genotype>().unwrap_err();
        match err {
            GenotypeError::Syntax { input, offset, .. } => {
                assert!(
                    input.starts_with("...") && input.contains("identity-1"),
                    "{input}"
                );
                assert!(offset > 300, "{offset}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn wrong_space_is_named() {
        let spaces = spaces();
        let err = spaces[0]
            .encode(&Genotype::known("nb201-optimum").unwrap())
            .unwrap_err();
        assert_eq!(
            err,
            GenotypeError::WrongSpace {
                expected: SpaceKind::Nasnet,
                found: SpaceKind::Nb201
            }
        );
        assert!(err.to_string().contains("NASNet") && err.to_string().contains("NB201"));
    }

    #[test]
    fn decode_rejects_bad_vectors() {
        let space = spaces().pop().unwrap();
        let err = space.decode(&[0, 0, 0]).unwrap_err();
        assert!(
            err.to_string()
                .contains("expected 6 decision indices, found 3"),
            "{err}"
        );
        let err = space.decode(&[0, 0, 5, 0, 0, 0]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("decision 2") && msg.contains("= 5") && msg.contains("0..=4"),
            "{msg}"
        );
    }

    #[test]
    fn mutation_skips_decisions_with_one_choice() {
        let decisions = vec![
            Decision::new("fixed", vec!["only".into()]),
            Decision::new("free", vec!["a".into(), "b".into(), "c".into()]),
        ];
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..50 {
            let mut v = vec![0, 1];
            assert_eq!(mutate_decisions(&decisions, &mut v, &mut rng), Some(1));
            assert_eq!(v[0], 0);
            assert_ne!(v[1], 1);
        }
        let mut v = vec![0];
        assert_eq!(mutate_decisions(&decisions[..1], &mut v, &mut rng), None);
    }
}
