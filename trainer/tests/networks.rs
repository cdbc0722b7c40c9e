//! Child networks: the published parameter and multiply-add counts, consistency of the layer
//! table with the allocated variables, forward shapes for random children of every space.

use nasop_crds::space::{Genotype, SearchSpaceSpec};
use nasop_trainer::net::{to_channels_last, Mode, Net, NetConfig, NetError, Shape};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

fn within(value: i64, target: f64, tolerance: f64) -> bool {
    ((value as f64 - target) / target).abs() <= tolerance
}

#[test]
fn mnasnet_a1_has_the_published_3_9m_parameters_and_312m_multiply_adds() {
    let g = Genotype::known("mnasnet-a1").unwrap();
    let net = Net::new(
        &g,
        &NetConfig::new(
            Shape {
                c: 3,
                h: 224,
                w: 224,
            },
            1000,
        ),
        Device::Cpu,
    )
    .unwrap();
    let s = net.summary();
    // 1807.11626 Table 1: 3.9M parameters, 312M multiply-adds (ImageNet, 224x224).
    assert!(within(s.params, 3.9e6, 0.03), "params {}", s.params);
    assert!(within(s.macs, 312e6, 0.03), "macs {}", s.macs);
    assert_eq!(s.params, 3_887_038);
    assert_eq!(s.macs, 311_579_072);
}

#[test]
fn nasnet_a_6_at_768_has_about_3_3m_parameters_on_cifar10() {
    let g = Genotype::known("nasnet-a").unwrap();
    let mut config = NetConfig::cifar10();
    config.cells_per_stage = Some(6);
    config.filters = Some(32);
    config.aux_head = true;
    let net = Net::new(&g, &config, Device::Cpu).unwrap();
    let s = net.summary();
    // 1707.07012 Table 1: NASNet-A (6 @ 768), 3.3M parameters; the auxiliary head is not counted.
    assert!(within(s.params, 3.3e6, 0.10), "params {}", s.params);
    assert_eq!(s.params, 3_328_234);
    assert!(s.aux_params > 0);
    // "6 @ 768": the last cell outputs 768 channels.
    let classifier = s.layers.iter().find(|l| l.name == "classifier").unwrap();
    assert_eq!(classifier.params, 768 * 10 + 10);
}

#[test]
fn nb201_optimum_matches_the_benchmark_counts() {
    let net = Net::new(
        &Genotype::known("nb201-optimum").unwrap(),
        &NetConfig::cifar10(),
        Device::Cpu,
    )
    .unwrap();
    // NAS-Bench-201 index 6111: params_M_c10 1.073466, flops_M_c10 153.27297.
    assert_eq!(net.summary().params, 1_073_466);
    assert_eq!(net.summary().macs, 153_272_960);
}

#[test]
fn layer_table_matches_allocated_variables_and_forward_shapes_for_random_children() {
    tch::manual_seed(0);
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let specs: Vec<SearchSpaceSpec> = ["{\"nasnet\": {}}", "{\"mnasnet\": {}}", "{\"nb201\": {}}"]
        .iter()
        .map(|s| serde_json::from_str(s).unwrap())
        .collect();
    for spec in &specs {
        let space = spec.build().unwrap();
        for i in 0..4 {
            let g = space.sample(&mut rng);
            let mut config = NetConfig::new(Shape { c: 3, h: 32, w: 32 }, 7);
            config.cells_per_stage = Some(1);
            config.filters = Some(8);
            config.head_filters = Some(64);
            config.aux_head = i % 2 == 0;
            let net = Net::new(&g, &config, Device::Cpu).unwrap_or_else(|e| panic!("{g}: {e}"));
            let s = net.summary();
            assert_eq!(
                &Net::summarize(&g, &config).unwrap(),
                s,
                "counting alone gives the same table"
            );
            assert_eq!(net.allocated_params(), s.params + s.aux_params, "{g}");
            assert_eq!(
                s.layers.iter().map(|l| l.params).sum::<i64>(),
                s.params + s.aux_params
            );
            assert!(s.macs > 0 && s.params > 0);
            let x = Tensor::randn([2, 3, 32, 32], (Kind::Float, Device::Cpu));
            let (logits, aux) = net.forward(&x, Mode::Train { drop_path: 0.2 });
            assert_eq!(logits.size(), [2, 7], "{g}");
            let has_aux = matches!(g, Genotype::Nasnet(_)) && config.aux_head;
            assert_eq!(aux.map(|a| a.size()), has_aux.then(|| vec![2, 7]), "{g}");
            let (eval, aux) = net.forward(&x, Mode::Eval);
            assert!(aux.is_none());
            assert!(bool::try_from(eval.isfinite().all()).unwrap());
        }
    }
}

#[test]
fn channels_last_weights_and_inputs_give_the_same_outputs() {
    tch::manual_seed(3);
    for name in ["nb201-optimum", "mnasnet-a1", "nasnet-a"] {
        let g = Genotype::known(name).unwrap();
        let mut config = NetConfig::cifar10();
        config.cells_per_stage = Some(1);
        config.filters = Some(8);
        let mut net = Net::new(&g, &config, Device::Cpu).unwrap();
        let x = Tensor::randn([3, 3, 32, 32], (Kind::Float, Device::Cpu));
        let (before, _) = net.forward(&x, Mode::Eval);
        net.to_channels_last();
        let (after, _) = net.forward(&to_channels_last(&x), Mode::Eval);
        let diff = f64::try_from((before - after).abs().max()).unwrap();
        assert!(diff < 1e-4, "{name}: max difference {diff}");
    }
}

#[test]
fn bf16_compute_stays_close_to_fp32() {
    tch::manual_seed(5);
    let g = Genotype::known("nb201-optimum").unwrap();
    let mut config = NetConfig::cifar10();
    config.cells_per_stage = Some(1);
    let fp32 = Net::new(&g, &config, Device::Cpu).unwrap();
    config.bf16 = true;
    let mut bf16 = Net::new(&g, &config, Device::Cpu).unwrap();
    bf16.var_store_mut().copy(fp32.var_store()).unwrap();
    let x = Tensor::randn([4, 3, 32, 32], (Kind::Float, Device::Cpu));
    let (a, _) = fp32.forward(&x, Mode::Eval);
    let (b, _) = bf16.forward(&x, Mode::Eval);
    assert_eq!(b.kind(), Kind::Float, "logits come back as f32");
    let scale = f64::try_from(a.abs().max()).unwrap();
    let diff = f64::try_from((a - b).abs().max()).unwrap();
    assert!(
        diff <= 0.05 * scale.max(1.0),
        "difference {diff} vs scale {scale}"
    );
}

#[test]
fn summaries_of_huge_networks_allocate_nothing() {
    let g = Genotype::known("nasnet-a").unwrap();
    let mut config = NetConfig::cifar10();
    config.cells_per_stage = Some(32);
    config.filters = Some(4096);
    // About 1 TB of weights: building them would exhaust memory; counting takes milliseconds.
    let s = Net::summarize(&g, &config).unwrap();
    assert_eq!(s.params, 251_076_227_082);
    assert_eq!(s.macs, 37_094_477_987_840);
}

#[test]
fn bad_settings_name_the_flag() {
    let nb201 = Genotype::known("nb201-optimum").unwrap();
    let err = Net::new(
        &nb201,
        &NetConfig::new(Shape { c: 3, h: 30, w: 30 }, 10),
        Device::Cpu,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            NetError::Setting {
                field: "--input-size",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("30x30"), "{err}");
    let err = Net::new(
        &nb201,
        &NetConfig::new(Shape { c: 3, h: 4, w: 4 }, 10),
        Device::Cpu,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("--input-size (height): 4 is out of range"),
        "{err}"
    );
    let err = Net::new(
        &nb201,
        &NetConfig::new(Shape { c: 3, h: 32, w: 32 }, 0),
        Device::Cpu,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "--classes: 0 is out of range; allowed: 1..=100000"
    );
    let mut config = NetConfig::cifar10();
    config.filters = Some(0);
    let err = Net::new(&nb201, &config, Device::Cpu).unwrap_err();
    assert_eq!(
        err.to_string(),
        "--filters: 0 is out of range; allowed: 1..=4096"
    );
    config.filters = None;
    config.dropout = Some(1.0);
    let err = Net::new(&nb201, &config, Device::Cpu).unwrap_err();
    assert_eq!(
        err.to_string(),
        "--dropout: 1 is out of range; allowed: [0, 1)"
    );
}
