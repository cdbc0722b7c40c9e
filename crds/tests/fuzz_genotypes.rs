//! Property tests (proptest) of the genotype parsers of all three spaces: any string either
//! parses to a structurally valid genotype that prints back to itself, or returns an error
//! with a bounded message; never a panic. Inputs are arbitrary strings and edits of real
//! genotypes (deleted, inserted, replaced and duplicated pieces, extreme numbers), which reach
//! deep into each parser.

use nasop_crds::space::mnasnet::MnasnetSpaceSpec;
use nasop_crds::space::nasnet::NasnetSpaceSpec;
use nasop_crds::space::nb201::Nb201SpaceSpec;
use nasop_crds::space::{SearchSpaceSpec, KNOWN_GENOTYPES};
use nasop_crds::{Genotype, SearchSpace};
use proptest::prelude::*;
use rand_chacha::rand_core::SeedableRng;

fn spaces() -> &'static [SearchSpace] {
    static SPACES: std::sync::OnceLock<Vec<SearchSpace>> = std::sync::OnceLock::new();
    SPACES.get_or_init(|| {
        [
            SearchSpaceSpec::Nasnet(NasnetSpaceSpec::default()),
            SearchSpaceSpec::Mnasnet(MnasnetSpaceSpec::default()),
            SearchSpaceSpec::Nb201(Nb201SpaceSpec::default()),
        ]
        .iter()
        .map(|s| s.build().unwrap())
        .collect()
    })
}

/// Real genotype strings: the known ones and 10 samples of each space.
fn seeds() -> &'static [String] {
    static SEEDS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut out: Vec<String> = KNOWN_GENOTYPES.iter().map(|(_, g)| g.to_string()).collect();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        for space in spaces() {
            for _ in 0..10 {
                out.push(space.sample(&mut rng).to_string());
            }
        }
        out
    })
}

/// The properties every input must satisfy.
fn check(text: &str) {
    match text.parse::<Genotype>() {
        Ok(g) => {
            g.validate()
                .unwrap_or_else(|e| panic!("{text:?} parsed to an invalid genotype: {e}"));
            let printed = g.to_string();
            let again: Genotype = printed
                .parse()
                .unwrap_or_else(|e| panic!("{text:?} printed as {printed:?}, which fails: {e}"));
            assert_eq!(again, g, "{text:?} -> {printed:?}");
            assert_eq!(again.hash(), g.hash());
            for space in spaces() {
                if space.validate(&g).is_ok() {
                    let decisions = space.encode(&g).unwrap();
                    assert_eq!(space.decode(&decisions).unwrap(), g, "{text:?}");
                }
            }
        }
        Err(e) => {
            let message = e.to_string();
            assert!(!message.is_empty(), "{text:?}: empty error");
            // Errors quote the input shortened to 80 characters (escaped: at most 10 bytes
            // each): a huge input gives no huge message.
            assert!(
                message.len() <= 1500,
                "{text:?}: {} byte error: {message}",
                message.len()
            );
        }
    }
}

/// One edit of a genotype string (indices are taken modulo the length).
#[derive(Clone, Debug)]
enum Edit {
    Delete(usize, usize),
    Insert(usize, String),
    Replace(usize, char),
    Truncate(usize),
    Duplicate(usize, usize),
}

/// Pieces of the three grammars, with numbers at and beyond their limits.
const TOKENS: &[&str] = &[
    "|",
    "+",
    "~",
    ";",
    "=",
    ",",
    "_",
    "normal=",
    "reduction=",
    "~0",
    "~1",
    "~7",
    "~99",
    "~18446744073709551616",
    "~-1",
    "none",
    "skip_connect",
    "nor_conv_3x3",
    "avg_pool_3x3",
    "sep_conv_3x3",
    "identity",
    "max_pool_7x7",
    "r0",
    "r1",
    "r9",
    "_k3",
    "_k7",
    "_s11",
    "_s22",
    "_s0",
    "_e0",
    "_e6",
    "_e99999999999",
    "_i0",
    "_o0",
    "_i32",
    "_o4294967296",
    "_se0.25",
    "_se1.5",
    "_seNaN",
    "_se-0.0",
    "_seinf",
    "_noskip",
    "_poolskip",
    "_conv",
    "nb201-optimum",
    " ",
    "\t",
    "\n",
    "é",
    "\u{0}",
    "\u{202e}",
    "1e309",
    "0x10",
    "+1",
    "",
];

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 1..8usize).prop_map(|(i, n)| Edit::Delete(i, n)),
        (any::<usize>(), proptest::sample::select(TOKENS))
            .prop_map(|(i, t)| Edit::Insert(i, t.to_string())),
        (any::<usize>(), any::<char>()).prop_map(|(i, c)| Edit::Replace(i, c)),
        any::<usize>().prop_map(Edit::Truncate),
        (any::<usize>(), 1..40usize).prop_map(|(i, n)| Edit::Duplicate(i, n)),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for e in edits {
        let len = chars.len().max(1);
        match e {
            Edit::Delete(i, n) => {
                let i = i % len;
                let end = (i + n).min(chars.len());
                if i < end {
                    chars.drain(i..end);
                }
            }
            Edit::Insert(i, t) => {
                let i = i % (chars.len() + 1);
                chars.splice(i..i, t.chars());
            }
            Edit::Replace(i, c) => {
                if !chars.is_empty() {
                    let i = i % chars.len();
                    chars[i] = *c;
                }
            }
            Edit::Truncate(i) => chars.truncate(i % len),
            Edit::Duplicate(i, n) => {
                let i = i % len;
                let end = (i + n).min(chars.len());
                if i < end {
                    let piece: Vec<char> = chars[i..end].to_vec();
                    chars.splice(end..end, piece);
                }
            }
        }
    }
    chars.into_iter().collect()
}

#[test]
fn every_real_genotype_passes_the_properties_and_a_digit_swap_is_caught() {
    for seed in seeds() {
        check(seed);
        assert!(seed.parse::<Genotype>().is_ok(), "{seed}");
    }
    // The checker itself: an input index past its node is an error, not a genotype.
    assert!("|none~0|+|none~0|none~1|+|none~0|none~1|none~3|"
        .parse::<Genotype>()
        .is_err());
    check("|none~0|+|none~0|none~1|+|none~0|none~1|none~3|");
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 3000,
        // A fixed seed: CI sees the same cases every run (a failure prints its minimal input).
        rng_seed: proptest::test_runner::RngSeed::Fixed(101),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_strings_parse_or_fail_cleanly(text in ".{0,300}") {
        check(&text);
    }

    #[test]
    fn edited_genotypes_parse_or_fail_cleanly(
        seed in 0..33usize,
        edits in proptest::collection::vec(edit(), 1..6),
    ) {
        let seeds = seeds();
        let text = apply(&seeds[seed % seeds.len()], &edits);
        check(&text);
    }

    #[test]
    fn long_inputs_fail_with_short_messages(seed in 0..33usize, copies in 2..200usize) {
        let seeds = seeds();
        let text = seeds[seed % seeds.len()].repeat(copies);
        check(&text);
    }
}
