//! `nasop-trainer` starts against libtorch without LD_LIBRARY_PATH (run path baked in).

use std::process::Command;

#[test]
fn info_runs_without_ld_library_path_and_computes() {
    let out = Command::new(env!("CARGO_BIN_EXE_nasop-trainer"))
        .arg("info")
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .expect("nasop-trainer starts");
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["selftest_sum"], 4096.0);
    assert!(info["cpu_threads"].as_i64().unwrap() >= 1);
    assert_eq!(info["nasop_version"], env!("CARGO_PKG_VERSION"));
}

use std::path::{Path, PathBuf};

use nasop_crds::result::{FailureReason, TrainOutcome, TrainResult, TERMINATION_MESSAGE_MAX_BYTES};

fn trainer(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_nasop-trainer"))
        .args(args)
        .output()
        .expect("nasop-trainer starts")
}

fn fashion() -> PathBuf {
    manifest_dir().join("../data/fashion-mnist")
}

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: stdout {} stderr {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn summary_accepts_names_strings_and_json_and_prints_one_object() {
    let by_name = json(&trainer(&[
        "summary",
        "-g",
        "mnasnet-a1",
        "--input-size",
        "224",
        "--classes",
        "1000",
    ]));
    assert_eq!(by_name["params"], 3_887_038);
    assert_eq!(by_name["macs"], 311_579_072);
    assert!(by_name.get("layers").is_none());
    let string = by_name["genotype"].as_str().unwrap().to_string();
    let by_string = json(&trainer(&[
        "summary",
        "-g",
        &string,
        "--input-size",
        "224",
        "--classes",
        "1000",
    ]));
    assert_eq!(by_string, by_name);
    let as_json = by_name["genotypeJson"].to_string();
    let verbose = json(&trainer(&[
        "summary",
        "-g",
        &as_json,
        "--input-size",
        "224",
        "--classes",
        "1000",
        "--verbose",
    ]));
    let layers = verbose["layers"].as_array().unwrap();
    assert_eq!(
        layers
            .iter()
            .map(|l| l["params"].as_i64().unwrap())
            .sum::<i64>(),
        3_887_038
    );
    assert_eq!(
        layers
            .iter()
            .map(|l| l["macs"].as_i64().unwrap())
            .sum::<i64>(),
        311_579_072
    );
    assert_eq!(layers[0]["name"], "stem.conv");
    assert_eq!(layers[0]["output"], serde_json::json!([32, 112, 112]));

    let bad = trainer(&[
        "summary",
        "-g",
        "|nor_conv_3x3~0|+|bogus~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("--genotype") && err.contains("bogus") && err.contains("avg_pool_3x3"),
        "{err}"
    );
}

#[test]
fn train_writes_the_result_to_stdout_the_termination_log_a_file_and_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("termination-log");
    let full = dir.path().join("out/result.json");
    let ckpt = dir.path().join("out/child.safetensors");
    let out = trainer(&[
        "train",
        "-g",
        "nb201-optimum",
        "--cells-per-stage",
        "1",
        "--filters",
        "4",
        "--dataset-format",
        "FashionMNIST",
        "--data",
        fashion().to_str().unwrap(),
        "--train-examples",
        "256",
        "--validation-examples",
        "64",
        "--epochs",
        "2",
        "--batch-size",
        "32",
        "--test",
        "--seed",
        "4",
        "--threads",
        "1",
        "--termination-log",
        log.to_str().unwrap(),
        "--result",
        full.to_str().unwrap(),
        "--checkpoint",
        ckpt.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("on cpu (fp32, 1 threads)"), "{stderr}");
    assert!(stderr.contains("epoch 2/2: train loss"), "{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let logged = std::fs::read_to_string(&log).unwrap();
    assert_eq!(stdout.trim_end(), logged);
    assert!(logged.len() <= TERMINATION_MESSAGE_MAX_BYTES);
    let TrainOutcome::Succeeded(r) = TrainResult::parse(&logged).unwrap().outcome else {
        panic!("{logged}")
    };
    assert_eq!((r.epochs, r.steps, r.batch_size, r.seed), (2, 16, 32, 4));
    assert_eq!((r.train_examples, r.validation_examples), (256, 64));
    assert_eq!(r.device, "cpu");
    assert!(r.test_accuracy.is_some());
    assert_eq!(r.learning_curve.len(), 2);
    let file = TrainResult::parse(&std::fs::read_to_string(&full).unwrap()).unwrap();
    assert_eq!(file, TrainResult::parse(&logged).unwrap());
    assert!(
        std::fs::metadata(&ckpt).unwrap().len() > 4 * 10_000,
        "weights are saved"
    );
}

fn failure(args: &[&str], dir: &Path) -> (i32, FailureReason, String) {
    let log = dir.join("log");
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--termination-log", log.to_str().unwrap()]);
    let out = trainer(&all);
    let TrainOutcome::Failed(f) = TrainResult::parse(&std::fs::read_to_string(&log).unwrap())
        .unwrap()
        .outcome
    else {
        panic!("{}", String::from_utf8_lossy(&out.stderr))
    };
    (out.status.code().unwrap(), f.reason, f.message)
}

#[test]
fn failures_have_distinct_exit_codes_and_a_reason_in_the_termination_log() {
    let dir = tempfile::tempdir().unwrap();
    let data = fashion();
    let base = [
        "train",
        "--dataset-format",
        "fashion-mnist",
        "--data",
        data.to_str().unwrap(),
        "--max-steps",
        "1",
    ];
    let with = |extra: &[&'static str]| -> Vec<&str> {
        base.iter().copied().chain(extra.iter().copied()).collect()
    };

    let (code, reason, message) =
        failure(&with(&["-g", "nb201-optimum", "--epochs", "0"]), dir.path());
    assert_eq!((code, reason), (2, FailureReason::InvalidInput));
    assert_eq!(message, "--epochs: 0 is out of range; allowed: 1..=10000");

    let (code, reason, message) = failure(&with(&["-g", "r1_k3_s11_e1_i32_o16_bogus"]), dir.path());
    assert_eq!((code, reason), (2, FailureReason::InvalidInput));
    assert!(message.starts_with("--genotype:"), "{message}");

    let (code, reason, message) = failure(
        &with(&["-g", "nb201-optimum", "--device", "tpu"]),
        dir.path(),
    );
    assert_eq!((code, reason), (2, FailureReason::InvalidInput));
    assert_eq!(
        message,
        "--device \"tpu\" is not a device; allowed: auto, cpu, cuda, cuda:N"
    );

    let missing = dir.path().join("no-such-data");
    let (code, reason, message) = failure(
        &[
            "train",
            "-g",
            "nb201-optimum",
            "--dataset-format",
            "cifar10",
            "--data",
            missing.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!((code, reason), (2, FailureReason::DataError));
    assert!(
        message.ends_with("no-such-data: missing; expected a folder of cifar10 files"),
        "{message}"
    );

    if !tch::Cuda::is_available() {
        let (code, reason, message) = failure(
            &with(&["-g", "nb201-optimum", "--device", "cuda"]),
            dir.path(),
        );
        assert_eq!((code, reason), (4, FailureReason::DeviceUnavailable));
        assert!(
            message.starts_with("--device cuda: CUDA is not available here (0 CUDA devices"),
            "{message}"
        );
    }

    let out = trainer(&[
        "train",
        "-g",
        "nb201-optimum",
        "--dataset-format",
        "parquet",
        "--data",
        ".",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("allowed: cifar10, fashion-mnist, mnist, image-folder"));
}

#[test]
fn sigterm_stops_training_with_a_terminated_result() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_nasop-trainer"))
        .args([
            "train",
            "-g",
            "nb201-optimum",
            "--cells-per-stage",
            "1",
            "--filters",
            "4",
            "--dataset-format",
            "fashion-mnist",
        ])
        .arg("--data")
        .arg(fashion())
        .args([
            "--train-examples",
            "256",
            "--validation-examples",
            "64",
            "--epochs",
            "1000",
            "--threads",
            "1",
        ])
        .arg("--termination-log")
        .arg(&log)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    assert!(
        lines
            .by_ref()
            .map_while(Result::ok)
            .any(|l| l.starts_with("epoch 1/1000")),
        "training started"
    );
    let killed = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143));
    let TrainOutcome::Failed(f) = TrainResult::parse(&std::fs::read_to_string(&log).unwrap())
        .unwrap()
        .outcome
    else {
        panic!()
    };
    assert_eq!(f.reason, FailureReason::Terminated);
    assert!(
        f.message.starts_with("stopped by a signal at step"),
        "{}",
        f.message
    );
}

#[test]
fn sigterm_stops_a_probe_with_a_terminated_result() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_nasop-trainer"))
        .args([
            "probe",
            "-g",
            "nb201-optimum",
            "--input-size",
            "32",
            "--classes",
            "10",
            "--threads",
            "1",
            "--repeats",
            "100000",
        ])
        .arg("--termination-log")
        .arg(&log)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    assert!(
        lines
            .by_ref()
            .map_while(Result::ok)
            .any(|l| l.starts_with("probing ")),
        "probe started"
    );
    let killed = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(killed.success());
    assert_eq!(child.wait().unwrap().code(), Some(143));
    let result =
        nasop_crds::result::ProbeResult::parse(std::fs::read_to_string(&log).unwrap().trim())
            .unwrap();
    let nasop_crds::result::ProbeOutcome::Failed(f) = result.outcome else {
        panic!("{result:?}")
    };
    assert_eq!(f.reason, FailureReason::Terminated);
}

/// The dynamic section lists `libtorch_cuda.so`: without it, a build against PyPI's torch
/// silently trains on the CPU of a GPU node (the linker drops the library as unneeded).
#[test]
fn the_binary_links_libtorch_cuda_so() {
    let lib = Path::new(env!("NASOP_LIBTORCH_LIB_DIR"));
    if !lib.join("libtorch_cuda.so").exists() {
        panic!(
            "{} has no libtorch_cuda.so: install PyPI's default (CUDA) torch wheel (make setup)",
            lib.display()
        );
    }
    let out = Command::new("objdump")
        .arg("-p")
        .arg(env!("CARGO_BIN_EXE_nasop-trainer"))
        .output()
        .expect("objdump (binutils) runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let needed: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("NEEDED"))
        .map(str::trim)
        .collect();
    assert!(needed.contains(&"libtorch_cuda.so"), "NEEDED: {needed:?}");
    assert!(
        needed.contains(&"libtorch_cpu.so") && needed.contains(&"libc10.so"),
        "NEEDED: {needed:?}"
    );
}

fn probe_result(out: &std::process::Output) -> nasop_crds::result::ProbeResult {
    let text = String::from_utf8_lossy(&out.stdout);
    nasop_crds::result::ProbeResult::parse(text.trim())
        .unwrap_or_else(|e| panic!("{e}: {text} {}", String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn probe_measures_batch_1_latency_and_exports_torchscript_that_computes_the_same() {
    use nasop_crds::result::ProbeOutcome;
    let dir = tempfile::tempdir().unwrap();
    let ts = dir.path().join("child.pt");
    let log = dir.path().join("log");
    let out = trainer(&[
        "probe",
        "-g",
        "nb201-optimum",
        "--input-size",
        "32",
        "--classes",
        "10",
        "--threads",
        "1",
        "--repeats",
        "7",
        "--warmup",
        "2",
        "--termination-log",
        log.to_str().unwrap(),
        "--export-torchscript",
        ts.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result = probe_result(&out);
    assert_eq!(
        std::fs::read_to_string(&log).unwrap().trim(),
        String::from_utf8_lossy(&out.stdout).trim()
    );
    let ProbeOutcome::Succeeded(r) = result.outcome else {
        panic!()
    };
    let l = &r.latency;
    assert_eq!(
        (l.repeats, r.warmup, r.threads, r.input_shape),
        (7, 2, 1, [1, 3, 32, 32])
    );
    assert!(
        l.min_ms > 0.0 && l.min_ms <= l.median_ms && l.median_ms <= l.p90_ms && l.stddev_ms >= 0.0,
        "{l:?}"
    );
    assert_eq!(
        (r.params, r.macs, r.weights.as_str(), r.device.as_str()),
        (1_073_466, 153_272_960, "random", "cpu")
    );
    assert!(
        r.versions.libtorch.starts_with("2.11.0"),
        "{:?}",
        r.versions
    );
    assert!(r.identity.cpu_model.is_some() && r.identity.node_name.is_some());
    assert!(r.channels_last, "channels-last is the default layout");

    // The TorchScript module computes what the network computes (same seed-0 weights).
    use nasop_trainer::net::{Mode, Net, NetConfig};
    use tch::{Device, Kind, Tensor};
    let module = tch::CModule::load(&ts).unwrap();
    tch::manual_seed(0);
    let g = nasop_crds::Genotype::known("nb201-optimum").unwrap();
    let net = Net::new(&g, &NetConfig::cifar10(), Device::Cpu).unwrap();
    let x = Tensor::randn([1, 3, 32, 32], (Kind::Float, Device::Cpu));
    let expected = tch::no_grad(|| net.forward(&x, Mode::Eval).0);
    let traced = tch::no_grad(|| module.forward_ts(&[x]).unwrap());
    // Traced on a channels-last input, run here on NCHW: other kernels, float32 rounding.
    let scale = f64::try_from(expected.abs().max()).unwrap();
    let diff = f64::try_from((expected - traced).abs().max()).unwrap();
    assert!(diff <= 1e-5 * scale.max(1.0), "{diff} of {scale}");
}

#[test]
fn probe_loads_trained_weights_and_rejects_bad_input() {
    use nasop_crds::result::ProbeOutcome;
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("w.safetensors");
    let trained = trainer(&[
        "train",
        "-g",
        "nb201-optimum",
        "--cells-per-stage",
        "1",
        "--filters",
        "4",
        "--dataset-format",
        "fashion-mnist",
        "--data",
        fashion().to_str().unwrap(),
        "--train-examples",
        "128",
        "--validation-examples",
        "32",
        "--max-steps",
        "2",
        "--threads",
        "1",
        "--termination-log",
        dir.path().join("tl").to_str().unwrap(),
        "--checkpoint",
        ckpt.to_str().unwrap(),
    ]);
    assert!(
        trained.status.success(),
        "{}",
        String::from_utf8_lossy(&trained.stderr)
    );
    let log = dir.path().join("log");
    let base = [
        "probe",
        "-g",
        "nb201-optimum",
        "--cells-per-stage",
        "1",
        "--input-size",
        "28",
        "--channels",
        "1",
        "--classes",
        "10",
        "--termination-log",
        log.to_str().unwrap(),
    ];
    let with = |extra: &[&str]| -> std::process::Output {
        trainer(
            &base
                .iter()
                .copied()
                .chain(extra.iter().copied())
                .collect::<Vec<_>>(),
        )
    };
    let out = with(&[
        "--filters",
        "4",
        "--repeats",
        "3",
        "--checkpoint",
        ckpt.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ProbeOutcome::Succeeded(r) = probe_result(&out).outcome else {
        panic!()
    };
    assert_eq!(r.weights, ckpt.display().to_string());
    assert!(r.channels_last);
    let out = with(&[
        "--filters",
        "4",
        "--repeats",
        "3",
        "--channels-last",
        "false",
    ]);
    let ProbeOutcome::Succeeded(nchw) = probe_result(&out).outcome else {
        panic!("{}", String::from_utf8_lossy(&out.stderr))
    };
    assert_eq!(
        (nchw.channels_last, nchw.params, nchw.macs),
        (false, r.params, r.macs)
    );

    let failed = |out: std::process::Output| -> (i32, FailureReason, String) {
        let ProbeOutcome::Failed(f) = probe_result(&out).outcome else {
            panic!()
        };
        (out.status.code().unwrap(), f.reason, f.message)
    };
    let (code, reason, message) = failed(with(&[
        "--filters",
        "8",
        "--checkpoint",
        ckpt.to_str().unwrap(),
    ]));
    assert_eq!((code, reason), (2, FailureReason::InvalidInput));
    assert!(message.contains("does not fit this network"), "{message}");
    let (code, _, message) = failed(with(&["--repeats", "0"]));
    assert_eq!(
        (code, message.as_str()),
        (2, "--repeats: 0 is out of range; allowed: 1..=100000")
    );
    let (code, _, message) = failed(with(&["--device", "phone"]));
    assert_eq!(
        (code, message.as_str()),
        (
            2,
            "--device \"phone\" is not a device; allowed: auto, cpu, cuda, cuda:N"
        )
    );
    let (code, _, message) = failed(trainer(&[
        "probe",
        "-g",
        "|nor_conv_3x3~0|+|",
        "--termination-log",
        log.to_str().unwrap(),
    ]));
    assert_eq!(code, 2);
    assert!(message.starts_with("--genotype:"), "{message}");
    if !tch::Cuda::is_available() {
        let (code, reason, _) = failed(with(&["--device", "cuda"]));
        assert_eq!((code, reason), (4, FailureReason::DeviceUnavailable));
    }
    // Arguments that do not parse leave a probe failure document too.
    let out = trainer(&[
        "probe",
        "-g",
        "nb201-optimum",
        "--repeats",
        "many",
        "--termination-log",
        log.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let parsed =
        nasop_crds::result::ProbeResult::parse(&std::fs::read_to_string(&log).unwrap()).unwrap();
    assert!(
        matches!(parsed.outcome, ProbeOutcome::Failed(f) if f.message.starts_with("invalid value 'many' for '--repeats"))
    );
}

#[test]
fn corrupt_data_and_real_out_of_memory_give_their_own_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    // A training-images file cut in half (a broken download): DataError, exit 2.
    let data = dir.path().join("fmnist");
    std::fs::create_dir(&data).unwrap();
    for f in std::fs::read_dir(fashion()).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, data.join(f.file_name().unwrap())).unwrap();
    }
    let images = data.join("train-images-idx3-ubyte.gz");
    let bytes = std::fs::read(&images).unwrap();
    std::fs::write(&images, &bytes[..bytes.len() / 2]).unwrap();
    let (code, reason, message) = failure(
        &[
            "train",
            "-g",
            "nb201-optimum",
            "--dataset-format",
            "fashion-mnist",
            "--data",
            data.to_str().unwrap(),
            "--max-steps",
            "1",
        ],
        dir.path(),
    );
    assert_eq!((code, reason), (2, FailureReason::DataError), "{message}");
    assert!(message.contains("train-images-idx3-ubyte.gz"), "{message}");

    // Out of memory for real: a 4 GB address-space limit (ulimit -v) and a batch whose
    // activations need more. libtorch's allocator fails; OutOfMemory, exit 3.
    let log = dir.path().join("oom-log");
    let trainer = env!("CARGO_BIN_EXE_nasop-trainer");
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "ulimit -v 4000000 && exec {trainer} train -g nb201-optimum --dataset-format fashion-mnist \
             --data {} --train-examples 2048 --batch-size 2048 --filters 64 --max-steps 1 \
             --threads 1 --termination-log {}",
            fashion().display(),
            log.display()
        ))
        .output()
        .unwrap();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let TrainOutcome::Failed(f) = TrainResult::parse(&text)
        .unwrap_or_else(|e| panic!("{e}: {text}\n{}", String::from_utf8_lossy(&out.stderr)))
        .outcome
    else {
        panic!("trained under 4 GB: {text}")
    };
    assert_eq!(out.status.code(), Some(3), "{}", f.message);
    assert_eq!(f.reason, FailureReason::OutOfMemory);
    assert!(f.message.contains("can't allocate memory"), "{}", f.message);
}

/// This package's directory: cargo's `CARGO_MANIFEST_DIR` when it runs the test (right even
/// when the test binary was built from another checkout sharing the target directory), else
/// the one it was built with.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}
