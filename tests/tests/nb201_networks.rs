//! The NB201 networks nasop-trainer builds against the benchmark's own parameter and
//! multiply-add counts (`params_M_c10`, `flops_M_c10` of `nb201/nb201_cifar10.csv`).

use nasop_crds::space::nb201::Nb201Genotype;
use nasop_crds::Genotype;
use nasop_tests::shared_data_dir;
use nasop_trainer::net::{Net, NetConfig};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::Device;

/// Cells checked (a seeded uniform sample of the 15,625).
const SAMPLE: usize = 500;
/// Relative tolerance of a match.
const TOLERANCE: f64 = 0.005;

#[test]
fn parameters_and_multiply_adds_match_the_benchmark_for_a_random_sample_of_cells() {
    let path = shared_data_dir().join("nb201/nb201_cifar10.csv");
    let mut reader = csv::Reader::from_path(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let headers = reader.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (arch, params, flops) = (col("arch_str"), col("params_M_c10"), col("flops_M_c10"));
    let rows: Vec<(String, f64, f64)> = reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            (
                r[arch].to_string(),
                r[params].parse().unwrap(),
                r[flops].parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(rows.len(), 15_625);
    let mut rng = ChaCha8Rng::seed_from_u64(201);
    let mut params_ok = 0;
    let mut macs_ok = 0;
    let mut worst: Vec<String> = Vec::new();
    for _ in 0..SAMPLE {
        let i = nasop_crds::space::rng::uniform_index(&mut rng, rows.len());
        let (arch, params_m, flops_m) = &rows[i];
        let cell: Nb201Genotype = arch.parse().unwrap();
        let net = Net::new(&Genotype::Nb201(cell), &NetConfig::cifar10(), Device::Cpu).unwrap();
        let s = net.summary();
        let p = s.params as f64 / 1e6;
        let m = s.macs as f64 / 1e6;
        if ((p - params_m) / params_m).abs() <= TOLERANCE {
            params_ok += 1;
        } else {
            worst.push(format!("row {i} {arch}: params {p} vs {params_m}"));
        }
        if ((m - flops_m) / flops_m).abs() <= TOLERANCE {
            macs_ok += 1;
        } else {
            worst.push(format!("row {i} {arch}: macs {m} vs {flops_m}"));
        }
    }
    eprintln!("params within 0.5%: {params_ok}/{SAMPLE}; multiply-adds: {macs_ok}/{SAMPLE}");
    eprintln!("{worst:#?}");
    assert!(
        params_ok * 100 >= SAMPLE * 99,
        "{params_ok}/{SAMPLE}: {worst:#?}"
    );
    assert!(
        macs_ok * 100 >= SAMPLE * 99,
        "{macs_ok}/{SAMPLE}: {worst:#?}"
    );
}
