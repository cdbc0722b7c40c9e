//! The `nasop-trainer` command lines of a search's children: the same arguments for a trainer
//! pod (the operator) and a local process (`nasop run`). Pure.

use nasop_crds::api::{
    ArchitectureSearchSpec, ChildTrialSpec, DatasetFormat, ProbeDevice, ProbeTemplate,
    TrialTemplate,
};
use nasop_crds::space::SearchSpaceSpec;

/// What the commands of a child depend on: the space parameters and the trial and probe
/// templates, from the search or from the child's own (self-describing) `ChildTrial`.
#[derive(Clone, Copy, Debug)]
pub struct ChildSpec<'a> {
    /// The search space (its network flags).
    pub search_space: &'a SearchSpaceSpec,
    /// How the child is trained.
    pub trial: &'a TrialTemplate,
    /// How its latency is measured.
    pub probe: Option<&'a ProbeTemplate>,
}

impl<'a> From<&'a ArchitectureSearchSpec> for ChildSpec<'a> {
    fn from(s: &'a ArchitectureSearchSpec) -> Self {
        Self {
            search_space: &s.search_space,
            trial: &s.trial,
            probe: s.probe.as_ref(),
        }
    }
}

impl<'a> From<&'a ChildTrialSpec> for ChildSpec<'a> {
    fn from(s: &'a ChildTrialSpec) -> Self {
        Self {
            search_space: &s.search_space,
            trial: &s.trial,
            probe: s.probe.as_deref(),
        }
    }
}

/// Where the outputs of one child go, and how it runs locally.
#[derive(Clone, Debug, PartialEq)]
pub struct Outputs {
    /// The result JSON (`--result`).
    pub result: String,
    /// The termination message path (`--termination-log`).
    pub termination_log: String,
    /// Trained weights (`--checkpoint`), if kept.
    pub checkpoint: Option<String>,
}

/// Input shape `[N, C, H, W]` and classes of a dataset format, when the format fixes them
/// (CIFAR-10: 3x32x32, 10 classes; MNIST and Fashion-MNIST: 1x28x28, 10 classes).
pub fn dataset_shape(format: DatasetFormat) -> Option<([i64; 4], i64)> {
    match format {
        DatasetFormat::Cifar10 => Some(([1, 3, 32, 32], 10)),
        DatasetFormat::FashionMnist | DatasetFormat::Mnist => Some(([1, 1, 28, 28], 10)),
        DatasetFormat::ImageFolder => None,
    }
}

/// The network flags the search space fixes (`--cells-per-stage`, `--filters`).
fn net_args(space: &SearchSpaceSpec) -> Vec<String> {
    match space {
        SearchSpaceSpec::Nasnet(s) => vec![
            "--cells-per-stage".into(),
            s.cells_per_stage.to_string(),
            "--filters".into(),
            s.filters.to_string(),
        ],
        SearchSpaceSpec::Nb201(s) => vec![
            "--cells-per-stage".into(),
            s.cells_per_stage.to_string(),
            "--filters".into(),
            s.channels.to_string(),
        ],
        SearchSpaceSpec::Mnasnet(_) => Vec::new(),
    }
}

/// `nasop-trainer train` arguments (without the program name) for child `genotype`: the
/// space's network flags, the dataset at `data_path`, the trial template's epochs, batch size,
/// learning rate, seed, `threads` when given, the outputs, then the template's extra `args`
/// (last, so they override).
pub fn train_args<'a>(
    spec: impl Into<ChildSpec<'a>>,
    genotype: &str,
    data_path: &str,
    seed: u64,
    threads: Option<usize>,
    outputs: &Outputs,
) -> Vec<String> {
    let spec = spec.into();
    let t = spec.trial;
    let mut a: Vec<String> = vec!["train".into(), "--genotype".into(), genotype.into()];
    a.extend(net_args(spec.search_space));
    a.extend([
        "--dataset-format".into(),
        t.dataset.format.name().into(),
        "--data".into(),
        data_path.into(),
        "--epochs".into(),
        t.epochs.to_string(),
        "--batch-size".into(),
        t.batch_size.to_string(),
        "--seed".into(),
        seed.to_string(),
    ]);
    if let Some(n) = t.dataset.train_examples {
        a.extend(["--train-examples".into(), n.to_string()]);
    }
    if let Some(n) = t.dataset.validation_examples {
        a.extend(["--validation-examples".into(), n.to_string()]);
    }
    if let Some(lr) = t.learning_rate {
        a.extend(["--learning-rate".into(), lr.to_string()]);
    }
    if let Some(n) = threads {
        a.extend(["--threads".into(), n.to_string()]);
    }
    a.extend(outputs_args(outputs));
    a.extend(t.args.iter().cloned());
    a
}

/// The probe input `[N, C, H, W]` and classes of a child: the probe template's input shape, or
/// batch 1 of the dataset's image shape; `None` when neither is known (an image folder without
/// `probe.inputShape`) or the image is not square.
pub fn probe_input<'a>(spec: impl Into<ChildSpec<'a>>) -> Option<([i64; 4], i64)> {
    let spec = spec.into();
    let known = dataset_shape(spec.trial.dataset.format);
    let shape = match (spec.probe.and_then(|p| p.input_shape.as_ref()), known) {
        (Some(s), _) if s.len() == 4 => [s[0], s[1], s[2], s[3]].map(i64::from),
        (None, Some((shape, _))) => shape,
        _ => return None,
    };
    (shape[2] == shape[3]).then_some((shape, known.map_or(10, |(_, classes)| classes)))
}

/// `nasop-trainer probe` arguments for child `genotype`, with the trained weights when
/// `weights` is given (input from [`probe_input`]; `None` when it is unknown).
pub fn probe_args<'a>(
    spec: impl Into<ChildSpec<'a>>,
    genotype: &str,
    weights: Option<&str>,
    outputs: &Outputs,
) -> Option<Vec<String>> {
    let spec = spec.into();
    let (shape, classes) = probe_input(spec)?;
    let default = ProbeTemplate::default();
    let probe = spec.probe.unwrap_or(&default);
    Some(probe_command(
        spec.search_space,
        probe,
        shape,
        classes,
        genotype,
        weights,
        outputs,
    ))
}

/// `nasop-trainer probe` arguments from explicit parts: the space's network flags, input
/// `shape` `[N, C, H, W]` (square images), `classes`, the template's repeats, warm-up, threads
/// and device, the weights when given, and the outputs.
pub fn probe_command(
    space: &SearchSpaceSpec,
    probe: &ProbeTemplate,
    shape: [i64; 4],
    classes: i64,
    genotype: &str,
    weights: Option<&str>,
    outputs: &Outputs,
) -> Vec<String> {
    let mut a: Vec<String> = vec!["probe".into(), "--genotype".into(), genotype.into()];
    a.extend(net_args(space));
    a.extend([
        "--batch".into(),
        shape[0].to_string(),
        "--channels".into(),
        shape[1].to_string(),
        "--input-size".into(),
        shape[2].to_string(),
        "--classes".into(),
        classes.to_string(),
        "--repeats".into(),
        probe.repeats.to_string(),
        "--warmup".into(),
        probe.warmup.to_string(),
        "--threads".into(),
        probe.threads.to_string(),
        "--device".into(),
        match probe.device {
            ProbeDevice::Cpu => "cpu".into(),
            ProbeDevice::Cuda => "cuda".into(),
        },
    ]);
    if let Some(w) = weights {
        a.extend(["--checkpoint".into(), w.into()]);
    }
    a.extend([
        "--result".into(),
        outputs.result.clone(),
        "--termination-log".into(),
        outputs.termination_log.clone(),
    ]);
    a
}

fn outputs_args(o: &Outputs) -> Vec<String> {
    let mut a = vec![
        "--result".into(),
        o.result.clone(),
        "--termination-log".into(),
        o.termination_log.clone(),
    ];
    if let Some(c) = &o.checkpoint {
        a.extend(["--checkpoint".into(), c.clone()]);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest;

    fn example(name: &str) -> ArchitectureSearchSpec {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        manifest::load(&root.join(name)).unwrap().0.spec
    }

    fn outputs() -> Outputs {
        Outputs {
            result: "r.json".into(),
            termination_log: "/dev/termination-log".into(),
            checkpoint: Some("w.safetensors".into()),
        }
    }

    #[test]
    fn train_arguments_carry_the_space_dataset_and_template() {
        let spec = example("nb201-evolution.yaml");
        let a = train_args(&spec, "|nor_conv_3x3~0|+|", "/data", 7, Some(2), &outputs());
        let text = a.join(" ");
        assert!(text.starts_with("train --genotype |nor_conv_3x3~0|+| --cells-per-stage "));
        assert!(text.contains(&format!(
            "--dataset-format {} --data /data --epochs {} --batch-size {} --seed 7",
            spec.trial.dataset.format.name(),
            spec.trial.epochs,
            spec.trial.batch_size
        )));
        assert!(text.contains("--threads 2 --result r.json --termination-log /dev/termination-log --checkpoint w.safetensors"));
        assert!(text.ends_with(&spec.trial.args.join(" ")));
    }

    #[test]
    fn probe_arguments_use_the_dataset_shape_or_the_template() {
        let mut spec = example("nb201-evolution.yaml");
        spec.trial.dataset.format = DatasetFormat::FashionMnist;
        let a = probe_args(&spec, "g", Some("w.safetensors"), &outputs()).unwrap();
        let text = a.join(" ");
        assert!(
            text.contains("--batch 1 --channels 1 --input-size 28 --classes 10 --repeats 50 --warmup 10 --threads 1 --device cpu --checkpoint w.safetensors"),
            "{text}"
        );
        spec.trial.dataset.format = DatasetFormat::ImageFolder;
        assert_eq!(probe_args(&spec, "g", None, &outputs()), None);
    }
}
