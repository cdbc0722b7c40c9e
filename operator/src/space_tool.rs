//! `nasop space`: inspect search spaces and genotypes (size, decisions, samples, checks).
//! Pure: every function returns a report; the CLI prints it as text or JSON.

use std::fmt::Write as _;

use nasop_crds::space::mnasnet::MnasnetSpaceSpec;
use nasop_crds::space::nasnet::NasnetSpaceSpec;
use nasop_crds::space::nb201::Nb201SpaceSpec;
use nasop_crds::space::SearchSpaceSpec;
use nasop_crds::{Genotype, GenotypeError, SearchSpace, SpaceKind};
use num_bigint::BigUint;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// The default space of a kind (the papers' parameters).
pub fn default_space(kind: SpaceKind) -> SearchSpace {
    let spec = match kind {
        SpaceKind::Nasnet => SearchSpaceSpec::Nasnet(NasnetSpaceSpec::default()),
        SpaceKind::Mnasnet => SearchSpaceSpec::Mnasnet(MnasnetSpaceSpec::default()),
        SpaceKind::Nb201 => SearchSpaceSpec::Nb201(Nb201SpaceSpec::default()),
    };
    spec.build().expect("default parameters are valid")
}

/// `value` in scientific notation, rounded to 3 significant digits, e.g. `5.11e33`.
pub fn scientific(value: &BigUint) -> String {
    let digits = value.to_string();
    if digits.len() <= 4 {
        return digits;
    }
    let mut lead: u32 = digits[..3].parse().expect("digits");
    let mut exponent = digits.len() - 1;
    if digits.as_bytes()[3] >= b'5' {
        lead += 1;
    }
    if lead == 1000 {
        lead = 100;
        exponent += 1;
    }
    format!("{}.{:02}e{exponent}", lead / 100, lead % 100)
}

/// Size and decisions of a space.
#[derive(Debug, Serialize)]
pub struct SpaceInfo {
    /// Space kind.
    pub space: SpaceKind,
    /// Exact number of genotypes.
    pub size: String,
    /// The same in scientific notation.
    pub size_approx: String,
    /// Decisions the controller samples.
    pub decisions: Vec<DecisionInfo>,
}

/// One decision.
#[derive(Debug, Serialize)]
pub struct DecisionInfo {
    /// Name, e.g. `normal.block1.inputA`.
    pub name: String,
    /// Choice labels.
    pub choices: Vec<String>,
}

/// Describes a space.
pub fn info(space: &SearchSpace) -> SpaceInfo {
    let size = space.size();
    SpaceInfo {
        space: space.kind(),
        size: size.to_string(),
        size_approx: scientific(&size),
        decisions: space
            .decisions()
            .iter()
            .map(|d| DecisionInfo {
                name: d.name.clone(),
                choices: d.choices.clone(),
            })
            .collect(),
    }
}

/// Renders [`SpaceInfo`] as text (`verbose`: every decision with its choices).
pub fn render_info(info: &SpaceInfo, verbose: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{} search space", info.space);
    let _ = writeln!(out, "  size:      {} ({})", info.size, info.size_approx);
    let _ = writeln!(out, "  decisions: {}", info.decisions.len());
    if verbose {
        let width = info
            .decisions
            .iter()
            .map(|d| d.name.len())
            .max()
            .unwrap_or(0);
        for d in &info.decisions {
            let _ = writeln!(
                out,
                "    {:width$}  {:>2} choices: {}",
                d.name,
                d.choices.len(),
                d.choices.join(", ")
            );
        }
    }
    out
}

/// One genotype with its hash.
#[derive(Debug, Serialize)]
pub struct GenotypeLine {
    /// Stable hash.
    pub hash: String,
    /// Canonical string.
    pub genotype: String,
}

impl GenotypeLine {
    fn of(genotype: &Genotype) -> Self {
        Self {
            hash: genotype.hash().to_string(),
            genotype: genotype.to_string(),
        }
    }
}

/// `n` genotypes drawn uniformly from `space` with a seeded generator (ChaCha8), one at a time.
pub fn sample(space: &SearchSpace, n: usize, seed: u64) -> impl Iterator<Item = GenotypeLine> + '_ {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(move |_| GenotypeLine::of(&space.sample(&mut rng)))
}

/// `n` single-decision mutants of `parent`, one at a time.
///
/// # Errors
/// When `parent` lies outside `space` (the error names the field).
pub fn mutate<'a>(
    space: &'a SearchSpace,
    parent: &'a Genotype,
    n: usize,
    seed: u64,
) -> Result<impl Iterator<Item = GenotypeLine> + 'a, GenotypeError> {
    space.validate(parent)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Ok((0..n).map(move |_| {
        let child = space
            .mutate(parent, &mut rng)
            .expect("a parent inside the space mutates");
        GenotypeLine::of(&child)
    }))
}

/// What `nasop space check` reports about a genotype.
#[derive(Debug, Serialize)]
pub struct CheckReport {
    /// Its space.
    pub space: SpaceKind,
    /// Canonical string.
    pub genotype: String,
    /// Stable hash.
    pub hash: String,
    /// JSON form (as in a `ChildTrial` spec).
    pub json: serde_json::Value,
    /// Decision indices in the given space, when it lies in it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decisions: Option<Vec<usize>>,
    /// Why it lies outside the given space.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outside_space: Option<String>,
}

/// Parses and checks a genotype string (or a known name), and places it in `space` if given.
///
/// # Errors
/// When the string is not a valid genotype (the error names the location and field).
pub fn check(text: &str, space: Option<&SearchSpace>) -> Result<CheckReport, GenotypeError> {
    let genotype: Genotype = text.parse()?;
    let (decisions, outside_space) = match space.map(|s| s.encode(&genotype)) {
        None => (None, None),
        Some(Ok(d)) => (Some(d), None),
        Some(Err(e)) => (None, Some(e.to_string())),
    };
    Ok(CheckReport {
        space: genotype.kind(),
        genotype: genotype.to_string(),
        hash: genotype.hash().to_string(),
        json: serde_json::to_value(&genotype).expect("a genotype serializes"),
        decisions,
        outside_space,
    })
}

/// Renders a [`CheckReport`] as text.
pub fn render_check(report: &CheckReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "valid {} genotype", report.space);
    let _ = writeln!(out, "  canonical: {}", report.genotype);
    let _ = writeln!(out, "  hash:      {}", report.hash);
    if let Some(d) = &report.decisions {
        let list: Vec<String> = d.iter().map(usize::to_string).collect();
        let _ = writeln!(out, "  decisions: [{}]", list.join(", "));
    }
    if let Some(why) = &report.outside_space {
        let _ = writeln!(out, "  outside the given space: {why}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scientific_keeps_three_digits() {
        assert_eq!(scientific(&BigUint::from(15_625u32)), "1.56e4");
        assert_eq!(scientific(&BigUint::from(432u32)), "432");
        assert_eq!(scientific(&BigUint::from(99_951u32)), "1.00e5");
        assert_eq!(scientific(&BigUint::from(12_349u32)), "1.23e4");
        // 5,107,366,... and 1,247,968,...: rounded, not cut.
        assert_eq!(
            scientific(&default_space(SpaceKind::Nasnet).size()),
            "5.11e33"
        );
        assert_eq!(
            scientific(&default_space(SpaceKind::Mnasnet).size()),
            "1.25e18"
        );
    }

    #[test]
    fn info_lists_every_decision() {
        let info = info(&default_space(SpaceKind::Nb201));
        assert_eq!(info.size, "15625");
        assert_eq!(info.decisions.len(), 6);
        let text = render_info(&info, true);
        assert!(text.contains("size:      15625 (1.56e4)"), "{text}");
        assert!(text.contains("node3.from2"), "{text}");
        assert!(text.contains("5 choices: none, skip_connect"), "{text}");
    }

    #[test]
    fn samples_are_reproducible_per_seed() {
        let space = default_space(SpaceKind::Mnasnet);
        let a: Vec<_> = sample(&space, 3, 9).collect();
        let b: Vec<_> = sample(&space, 3, 9).collect();
        let c: Vec<_> = sample(&space, 3, 10).collect();
        assert_eq!(
            a.iter().map(|g| &g.genotype).collect::<Vec<_>>(),
            b.iter().map(|g| &g.genotype).collect::<Vec<_>>()
        );
        assert_ne!(a[0].genotype, c[0].genotype);
        for line in &a {
            let report = check(&line.genotype, Some(&space)).unwrap();
            assert_eq!(report.hash, line.hash);
            assert_eq!(report.decisions.as_ref().unwrap().len(), 42);
        }
    }

    #[test]
    fn check_places_known_genotypes_and_explains_misses() {
        let report = check("nb201-optimum", Some(&default_space(SpaceKind::Nb201))).unwrap();
        assert_eq!(report.decisions, Some(vec![3, 3, 3, 1, 3, 2]));
        let report = check("mnasnet-a1", Some(&default_space(SpaceKind::Mnasnet))).unwrap();
        assert!(report
            .outside_space
            .unwrap()
            .contains("block 5: filters = 112"));
        let err = check("|none~0|+|none~0|", None).unwrap_err();
        assert!(err.to_string().contains("expected 3 nodes"), "{err}");
    }

    #[test]
    fn mutants_differ_from_their_parent() {
        let space = default_space(SpaceKind::Nasnet);
        let parent = space.sample(&mut ChaCha8Rng::seed_from_u64(2));
        let mutants: Vec<_> = mutate(&space, &parent, 5, 1).unwrap().collect();
        assert_eq!(mutants.len(), 5);
        assert!(mutants.iter().all(|m| m.hash != parent.hash().to_string()));
        // NASNet-A's explicit output lists are outside the space: no silent loss.
        let err = mutate(&space, &"nasnet-a".parse().unwrap(), 1, 1)
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .contains("concat = 0,2,3,4,5,6 is not allowed"),
            "{err}"
        );
    }
}
