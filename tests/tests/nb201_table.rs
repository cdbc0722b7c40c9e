//! The NAS-Bench-201 space against the benchmark's own table of all 15,625 cells.

use std::collections::{HashMap, HashSet};

use nasop_crds::space::nb201::{Nb201Genotype, Nb201SpaceSpec, NB201_OPTIMUM};
use nasop_crds::space::SearchSpaceSpec;
use nasop_crds::Genotype;
use nasop_tests::shared_data_dir;

struct Row {
    index: usize,
    arch: String,
    c10_test_200: f64,
    c10valid_valid_200: f64,
}

fn table() -> Vec<Row> {
    let path = shared_data_dir().join("nb201/nb201_cifar10.csv");
    let mut reader = csv::Reader::from_path(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let headers = reader.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (index, arch, test, valid) = (
        col("index"),
        col("arch_str"),
        col("c10_test_200"),
        col("c10valid_valid_200"),
    );
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            Row {
                index: r[index].parse().unwrap(),
                arch: r[arch].to_string(),
                c10_test_200: r[test].parse().unwrap(),
                c10valid_valid_200: r[valid].parse().unwrap(),
            }
        })
        .collect()
}

#[test]
fn every_benchmark_cell_parses_is_valid_distinct_and_round_trips() {
    let rows = table();
    assert_eq!(rows.len(), 15_625);
    let space = SearchSpaceSpec::Nb201(Nb201SpaceSpec::default())
        .build()
        .unwrap();
    let mut genotypes = HashSet::new();
    let mut hashes = HashMap::new();
    let mut decision_vectors = HashSet::new();
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row.index, i, "rows are in index order");
        let cell: Nb201Genotype = row.arch.parse().unwrap_or_else(|e| panic!("row {i}: {e}"));
        assert_eq!(cell.to_string(), row.arch, "row {i} round-trips");
        let genotype = Genotype::Nb201(cell);
        genotype.validate().unwrap();
        let decisions = space.encode(&genotype).unwrap();
        assert_eq!(space.decode(&decisions).unwrap(), genotype, "row {i}");
        assert!(
            decision_vectors.insert(decisions),
            "row {i}: decisions repeat"
        );
        if let Some(other) = hashes.insert(genotype.hash(), i) {
            panic!("hash collision between rows {other} and {i}");
        }
        assert!(genotypes.insert(genotype), "row {i} repeats a cell");
    }
    assert_eq!(genotypes.len(), 15_625);
    assert_eq!(hashes.len(), 15_625);
    // The table covers the space exactly: every one of the 5^6 decision vectors appears.
    assert_eq!(
        space.size(),
        num_bigint::BigUint::from(decision_vectors.len())
    );
}

#[test]
fn the_named_optimum_is_the_best_cell_of_the_table() {
    let rows = table();
    // Best by the search signal (validation accuracy, unique maximum 91.61)...
    let best = rows
        .iter()
        .max_by(|a, b| a.c10valid_valid_200.total_cmp(&b.c10valid_valid_200))
        .unwrap();
    assert_eq!(best.index, 6111);
    assert!((best.c10valid_valid_200 - 91.61).abs() < 0.01);
    assert_eq!(best.arch, NB201_OPTIMUM);
    // ... and tied for the best test accuracy, 94.37 (with index 13714).
    let top_test = rows.iter().map(|r| r.c10_test_200).fold(f64::MIN, f64::max);
    assert!((top_test - 94.37).abs() < 0.01, "{top_test}");
    assert_eq!(best.c10_test_200, top_test);
    assert_eq!(
        Genotype::known("nb201-optimum").unwrap().to_string(),
        best.arch
    );
}

#[test]
fn json_form_round_trips_for_every_cell() {
    for row in table().iter().step_by(7) {
        let genotype: Genotype = row.arch.parse().unwrap();
        let json = serde_json::to_string(&genotype).unwrap();
        assert_eq!(
            serde_json::from_str::<Genotype>(&json).unwrap(),
            genotype,
            "{json}"
        );
    }
}
