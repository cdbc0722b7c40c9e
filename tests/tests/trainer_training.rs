//! Training real children on real data (CPU): accuracy well above chance after a short run,
//! reproducibility from the seed, and checkpoints that load back identical.

use nasop_crds::result::TrainReport;
use nasop_crds::Genotype;
use nasop_tests::{shared_data_dir, workspace_root};
use nasop_trainer::data::loader::Augment;
use nasop_trainer::data::{self, DataFormat, DataOptions, Splits};
use nasop_trainer::net::{Mode, Net, NetConfig};
use nasop_trainer::train::{train, Optimizer, Runtime, Schedule, Silent, TrainConfig, TrainError};
use tch::{Device, Kind, Tensor};

fn load(
    format: DataFormat,
    path: std::path::PathBuf,
    train: Option<usize>,
    validation: usize,
) -> Splits {
    data::load(&DataOptions {
        format,
        path,
        train_examples: train,
        validation_examples: Some(validation),
        test: false,
        image_size: None,
    })
    .unwrap()
}

fn small(genotype: &str, splits: &Splits, cells: i64, filters: i64) -> (Genotype, NetConfig) {
    let g: Genotype = genotype.parse().unwrap();
    let mut config = NetConfig::new(splits.train.shape, splits.classes as i64);
    config.cells_per_stage = Some(cells);
    config.filters = Some(filters);
    (g, config)
}

/// Training draws from libtorch's process-wide generator (initialisation, dropout, DropPath),
/// so trainings in one process are reproducible only one at a time, as in `nasop-trainer`.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run(g: &Genotype, net: &NetConfig, splits: &Splits, config: &TrainConfig) -> (TrainReport, Net) {
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    train(g, net, splits, config, Runtime::CPU, &mut Silent).unwrap()
}

#[test]
fn nb201_child_learns_cifar10_in_300_steps() {
    let splits = load(
        DataFormat::Cifar10,
        shared_data_dir().join("cifar10"),
        Some(19_200),
        1000,
    );
    let (g, net) = small("nb201-optimum", &splits, 1, 8);
    let config = TrainConfig {
        epochs: 1,
        learning_rate: 0.1,
        seed: 1,
        ..TrainConfig::default()
    };
    let (report, _) = run(&g, &net, &splits, &config);
    eprintln!(
        "NB201 N=1 C=8, 300 steps: validation accuracy {:.3}, {:.0} img/s",
        report.validation_accuracy, report.samples_per_second
    );
    assert_eq!(report.steps, 300);
    // Chance is 10%; measured 44.3% on a 2-core CPU.
    assert!(
        report.validation_accuracy >= 0.35,
        "{}",
        report.validation_accuracy
    );
    // Counting only: building a network here would draw from the generator another test's
    // training is using.
    assert_eq!(report.params, Net::summarize(&g, &net).unwrap().params);
    assert_eq!(report.macs, 9_331_008);
    assert_eq!(
        (report.train_examples, report.validation_examples),
        (19_200, 1000)
    );
    assert_eq!(report.learning_curve.len(), 1);
    assert!(report.final_train_loss < 2.2, "{}", report.final_train_loss);
}

#[test]
fn nasnet_child_learns_fashion_mnist_in_one_short_epoch() {
    let splits = load(
        DataFormat::FashionMnist,
        workspace_root().join("data/fashion-mnist"),
        None,
        1000,
    );
    let (g, net) = small("nasnet-a", &splits, 1, 8);
    let config = TrainConfig {
        epochs: 1,
        learning_rate: 0.1,
        augment: Augment {
            crop_padding: 0,
            flip: true,
            cutout: 0,
        },
        seed: 0,
        ..TrainConfig::default()
    };
    let (report, _) = run(&g, &net, &splits, &config);
    eprintln!(
        "NASNet-A N=1 F=8, 1 epoch of 5,000: validation accuracy {:.3}",
        report.validation_accuracy
    );
    assert_eq!(report.steps, 78);
    // Chance is 10%; measured 75.4% on a 2-core CPU.
    assert!(
        report.validation_accuracy >= 0.70,
        "{}",
        report.validation_accuracy
    );
}

#[test]
fn the_same_seed_gives_the_same_result_and_another_seed_does_not() {
    let splits = load(
        DataFormat::FashionMnist,
        workspace_root().join("data/fashion-mnist"),
        Some(640),
        200,
    );
    let (g, mut net) = small("nasnet-a", &splits, 1, 4);
    net.aux_head = true;
    let config = TrainConfig {
        epochs: 2,
        drop_path: 0.3,
        seed: 9,
        augment: Augment {
            crop_padding: 2,
            flip: true,
            cutout: 8,
        },
        ..TrainConfig::default()
    };
    let strip = |mut r: TrainReport| {
        r.wall_seconds = 0.0;
        r.train_seconds = 0.0;
        r.samples_per_second = 0.0;
        for e in &mut r.learning_curve {
            e.seconds = 0.0;
        }
        r
    };
    let (a, _) = run(&g, &net, &splits, &config);
    let (b, _) = run(&g, &net, &splits, &config);
    assert_eq!(strip(a.clone()), strip(b));
    let (c, _) = run(&g, &net, &splits, &TrainConfig { seed: 10, ..config });
    assert_ne!(
        a.learning_curve[1].train_loss,
        c.learning_curve[1].train_loss
    );
}

#[test]
fn checkpoints_load_back_into_a_fresh_network_identically() {
    let splits = load(
        DataFormat::FashionMnist,
        workspace_root().join("data/fashion-mnist"),
        Some(256),
        64,
    );
    let (g, net_config) = small("nb201-optimum", &splits, 1, 4);
    let (_, trained) = run(
        &g,
        &net_config,
        &splits,
        &TrainConfig {
            epochs: 1,
            seed: 3,
            ..TrainConfig::default()
        },
    );
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("child.safetensors");
    trained.var_store().save(&path).unwrap();
    tch::manual_seed(99);
    let mut fresh = Net::new(&g, &net_config, Device::Cpu).unwrap();
    let x = Tensor::randn([5, 1, 28, 28], (Kind::Float, Device::Cpu));
    let before = fresh.forward(&x, Mode::Eval).0;
    fresh.var_store_mut().load(&path).unwrap();
    let expected = trained.forward(&x, Mode::Eval).0;
    let loaded = fresh.forward(&x, Mode::Eval).0;
    assert!(
        loaded.equal(&expected),
        "loaded weights and running statistics reproduce the outputs"
    );
    assert!(!before.equal(&expected));
}

#[test]
fn mnasnet_child_trains_with_rmsprop_and_exponential_decay() {
    let splits = load(
        DataFormat::FashionMnist,
        workspace_root().join("data/fashion-mnist"),
        Some(512),
        128,
    );
    let g: Genotype =
        "r1_k3_s11_e1_i16_o16_noskip,r2_k5_s22_e3_i16_o24_se0.25,r1_k3_s22_e6_i24_o32"
            .parse()
            .unwrap();
    let mut net = NetConfig::new(splits.train.shape, 10);
    net.head_filters = Some(128);
    let config = TrainConfig {
        epochs: 3,
        batch_size: 32,
        optimizer: Optimizer::RmsProp,
        schedule: Schedule::Exponential,
        learning_rate: 0.002,
        warmup_epochs: 0.5,
        label_smoothing: 0.1,
        ..TrainConfig::default()
    };
    let (report, _) = run(&g, &net, &splits, &config);
    assert_eq!(report.learning_curve.len(), 3);
    let curve = &report.learning_curve;
    assert!(curve[2].train_loss < curve[0].train_loss, "{curve:?}");
    // Exponential decay after a half-epoch warm-up: x0.97 per 2.4 epochs of the 2.5 after it.
    assert!(
        (curve[2].learning_rate - 0.002 * 0.97).abs() < 1e-12,
        "{}",
        curve[2].learning_rate
    );
    // 48 steps on 512 examples: measured 39.8% (chance 10%).
    assert!(
        report.validation_accuracy > 0.3,
        "{}",
        report.validation_accuracy
    );
}

#[test]
fn out_of_range_hyperparameters_are_rejected_before_training() {
    let splits = load(
        DataFormat::FashionMnist,
        workspace_root().join("data/fashion-mnist"),
        Some(64),
        16,
    );
    let (g, net) = small("nb201-optimum", &splits, 1, 4);
    for (config, message) in [
        (
            TrainConfig {
                epochs: 0,
                ..TrainConfig::default()
            },
            "--epochs: 0 is out of range; allowed: 1..=10000",
        ),
        (
            TrainConfig {
                batch_size: 0,
                ..TrainConfig::default()
            },
            "--batch-size: 0 is out of range; allowed: 1..=65536",
        ),
        (
            TrainConfig {
                learning_rate: f64::NAN,
                ..TrainConfig::default()
            },
            "--learning-rate: NaN is out of range; allowed: (0, 100]",
        ),
        (
            TrainConfig {
                label_smoothing: 1.0,
                ..TrainConfig::default()
            },
            "--label-smoothing: 1 is out of range; allowed: [0, 1)",
        ),
        (
            TrainConfig {
                warmup_epochs: 10.0,
                ..TrainConfig::default()
            },
            "--warmup-epochs: 10 is out of range; allowed: [0, epochs = 10)",
        ),
        (
            TrainConfig {
                max_steps: Some(0),
                ..TrainConfig::default()
            },
            "--max-steps: 0 is out of range; allowed: at least 1",
        ),
    ] {
        let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let err = train(&g, &net, &splits, &config, Runtime::CPU, &mut Silent).unwrap_err();
        assert!(matches!(err, TrainError::Config { .. }));
        assert_eq!(err.to_string(), message);
    }
}
