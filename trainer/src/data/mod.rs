//! Datasets: CIFAR-10 binary batches, MNIST / Fashion-MNIST IDX files and image folders, loaded
//! into memory as `u8` pixels, split into training and held-out validation examples, and served
//! as augmented, normalized batches by a background thread ([`loader`]).

pub mod cifar;
pub mod folder;
pub mod idx;
pub mod loader;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::net::Shape;

/// In-memory images of one split: `len * C * H * W` pixels (channel-major per image, like
/// CIFAR-10's records) and one label per image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSet {
    /// Pixels, image after image, each `[C, H, W]` row-major.
    pub pixels: Vec<u8>,
    /// Class index of each image, `< classes`.
    pub labels: Vec<u8>,
    /// Shape of one image.
    pub shape: Shape,
}

impl ImageSet {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The pixels of image `i`, `[C, H, W]`.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.shape.elements() as usize;
        &self.pixels[i * n..(i + 1) * n]
    }

    /// Images `range` as a new set.
    pub fn slice(&self, range: std::ops::Range<usize>) -> ImageSet {
        let n = self.shape.elements() as usize;
        ImageSet {
            pixels: self.pixels[range.start * n..range.end * n].to_vec(),
            labels: self.labels[range].to_vec(),
            shape: self.shape,
        }
    }
}

/// A dataset's file format (the `format` of the API's `DatasetSpec`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataFormat {
    /// CIFAR-10 binary batches (`data_batch_1.bin` .. `data_batch_5.bin`, `test_batch.bin`;
    /// 3,073-byte records: label, then 1,024 red, green, blue bytes; Krizhevsky 2009).
    Cifar10,
    /// Fashion-MNIST IDX files (`train-images-idx3-ubyte[.gz]`, ...; Xiao et al. 2017).
    FashionMnist,
    /// MNIST IDX files (same layout as Fashion-MNIST).
    Mnist,
    /// One folder per class (`<path>/[train|test]/<class>/<image>`; PNG, JPEG, BMP).
    ImageFolder,
}

impl DataFormat {
    /// Accepted spellings, for error messages.
    pub const ALLOWED: &'static str = "cifar10, fashion-mnist, mnist, image-folder";
}

impl FromStr for DataFormat {
    type Err = String;

    /// Accepts the API names (`CIFAR10`, `FashionMNIST`, `MNIST`, `ImageFolder`) and the
    /// kebab-case ones, case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let key: String = s
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_lowercase();
        match key.as_str() {
            "cifar10" => Ok(Self::Cifar10),
            "fashionmnist" => Ok(Self::FashionMnist),
            "mnist" => Ok(Self::Mnist),
            "imagefolder" => Ok(Self::ImageFolder),
            _ => Err(format!(
                "unknown dataset format {s:?}; allowed: {}",
                Self::ALLOWED
            )),
        }
    }
}

impl fmt::Display for DataFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Cifar10 => "cifar10",
            Self::FashionMnist => "fashion-mnist",
            Self::Mnist => "mnist",
            Self::ImageFolder => "image-folder",
        })
    }
}

/// Bad or missing data, with the file and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A required file or folder is missing.
    #[error("{}: missing; expected {expected}", path.display())]
    Missing {
        /// The path looked for.
        path: PathBuf,
        /// What should be there.
        expected: String,
    },
    /// A file exists but cannot be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A file's contents do not have the format's layout.
    #[error("{}: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A label is not a class index.
    #[error("{}: record {record} has label {label}; allowed: 0..={max}", path.display())]
    Label {
        /// The file.
        path: PathBuf,
        /// Record index in the file (0-based).
        record: usize,
        /// The bad label.
        label: u32,
        /// Largest allowed label.
        max: u32,
    },
    /// A split has no examples, or the requested sizes do not fit.
    #[error("{0}")]
    Split(String),
}

impl DataError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::NotFound {
            DataError::Missing {
                path: path.to_path_buf(),
                expected: "a readable file".into(),
            }
        } else {
            DataError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    }

    pub(crate) fn format(path: &Path, message: impl Into<String>) -> Self {
        DataError::Format {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
}

/// What to load and how to split it.
#[derive(Clone, Debug, PartialEq)]
pub struct DataOptions {
    /// File format.
    pub format: DataFormat,
    /// Folder holding the files.
    pub path: PathBuf,
    /// Training examples used (the first N of the training split; default: all).
    pub train_examples: Option<usize>,
    /// Validation examples, held out from the end of the training set (default: 10%, at least
    /// one; NASNet held out 5,000 of CIFAR-10's 50,000, 1707.07012 Sec. 4).
    pub validation_examples: Option<usize>,
    /// Also load the test set.
    pub test: bool,
    /// Image folders: resize every image to this square size (default: the first image's size).
    pub image_size: Option<u32>,
}

/// The loaded splits.
#[derive(Clone, Debug)]
pub struct Splits {
    /// Examples trained on.
    pub train: ImageSet,
    /// Held-out examples the reward is measured on.
    pub validation: ImageSet,
    /// The test set, when asked for (and present).
    pub test: Option<ImageSet>,
    /// Number of classes.
    pub classes: usize,
    /// Class names, where the format has them.
    pub class_names: Vec<String>,
}

/// Raw training and test sets as a format reader returns them.
pub(crate) struct Raw {
    pub train: ImageSet,
    pub test: Option<ImageSet>,
    pub classes: usize,
    pub class_names: Vec<String>,
}

/// Loads and splits a dataset.
///
/// # Errors
/// [`DataError`] for missing files, files of the wrong size or layout, labels out of range,
/// images of different sizes, an empty set, or split sizes that do not fit (validation must
/// leave at least one training example).
pub fn load(options: &DataOptions) -> Result<Splits, DataError> {
    if options.path.exists() && !options.path.is_dir() {
        return Err(DataError::format(
            &options.path,
            format!(
                "not a folder; expected a folder of {} files",
                options.format
            ),
        ));
    }
    if !options.path.is_dir() {
        return Err(DataError::Missing {
            path: options.path.clone(),
            expected: format!("a folder of {} files", options.format),
        });
    }
    let raw = match options.format {
        DataFormat::Cifar10 => cifar::load(&options.path, options.test)?,
        DataFormat::FashionMnist => {
            let mut raw = idx::load(&options.path, options.test)?;
            raw.class_names = idx::FASHION_CLASSES.iter().map(|s| s.to_string()).collect();
            raw
        }
        DataFormat::Mnist => idx::load(&options.path, options.test)?,
        DataFormat::ImageFolder => folder::load(&options.path, options.test, options.image_size)?,
    };
    split(raw, options)
}

fn split(raw: Raw, options: &DataOptions) -> Result<Splits, DataError> {
    let total = raw.train.len();
    if total < 2 {
        return Err(DataError::Split(format!(
            "{}: the training set has {total} examples; at least 2 are needed (one to train on, one to validate)",
            options.path.display()
        )));
    }
    let validation = options.validation_examples.unwrap_or((total / 10).max(1));
    if validation == 0 || validation >= total {
        return Err(DataError::Split(format!(
            "--validation-examples: {validation} is out of range; allowed: 1..={} (the training set has {total})",
            total - 1
        )));
    }
    let available = total - validation;
    let train = match options.train_examples {
        Some(0) => return Err(DataError::Split("--train-examples: 0 is out of range; allowed: at least 1".into())),
        Some(n) if n > available => {
            return Err(DataError::Split(format!(
                "--train-examples: {n} is out of range; allowed: 1..={available} ({total} examples minus {validation} held out for validation)"
            )))
        }
        Some(n) => n,
        None => available,
    };
    Ok(Splits {
        validation: raw.train.slice(available..total),
        train: raw.train.slice(0..train),
        test: raw.test,
        classes: raw.classes,
        class_names: raw.class_names,
    })
}

/// Per-channel mean and standard deviation of pixel values scaled to `[0, 1]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalization {
    /// Mean per channel.
    pub mean: Vec<f32>,
    /// Standard deviation per channel (at least 1e-3, so a constant channel does not divide by 0).
    pub std: Vec<f32>,
}

impl Normalization {
    /// The statistics of a set (computed over all its pixels, in `f64`).
    pub fn of(set: &ImageSet) -> Self {
        let c = set.shape.c as usize;
        let plane = (set.shape.h * set.shape.w) as usize;
        let mut sum = vec![0f64; c];
        let mut sq = vec![0f64; c];
        for image in set.pixels.chunks_exact(c * plane) {
            for (ch, channel) in image.chunks_exact(plane).enumerate() {
                let (s, q) = channel.iter().fold((0u64, 0u64), |(s, q), &p| {
                    let p = u64::from(p);
                    (s + p, q + p * p)
                });
                sum[ch] += s as f64;
                sq[ch] += q as f64;
            }
        }
        let n = (set.len() * plane).max(1) as f64;
        let mean: Vec<f64> = sum.iter().map(|s| s / n / 255.0).collect();
        let std = sq
            .iter()
            .zip(&mean)
            .map(|(q, m)| ((q / n / 65025.0 - m * m).max(0.0).sqrt()).max(1e-3) as f32)
            .collect();
        Self {
            mean: mean.into_iter().map(|m| m as f32).collect(),
            std,
        }
    }
}

/// Checks each label is below `classes`.
pub(crate) fn check_labels(path: &Path, labels: &[u8], classes: usize) -> Result<(), DataError> {
    match labels.iter().position(|&l| usize::from(l) >= classes) {
        Some(record) => Err(DataError::Label {
            path: path.to_path_buf(),
            record,
            label: u32::from(labels[record]),
            max: classes as u32 - 1,
        }),
        None => Ok(()),
    }
}
