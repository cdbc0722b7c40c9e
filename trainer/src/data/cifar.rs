//! CIFAR-10 in its binary format (Krizhevsky 2009, "Learning Multiple Layers of Features from
//! Tiny Images"): `data_batch_1.bin` .. `data_batch_5.bin` (training, 10,000 images each) and
//! `test_batch.bin`, each record 1 label byte then 3 x 1,024 bytes (red, green, blue planes of a
//! 32x32 image, row-major).

use std::path::{Path, PathBuf};

use super::{check_labels, DataError, ImageSet, Raw};
use crate::net::Shape;

/// Bytes of one record: label + 3 x 32 x 32 pixels.
pub const RECORD_BYTES: usize = 1 + 3 * 32 * 32;
/// Classes of CIFAR-10.
pub const CLASSES: usize = 10;
/// Training batch files, in order.
pub const TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
/// Test batch file.
pub const TEST_FILE: &str = "test_batch.bin";

/// The folder with the batch files: `path` itself or its `cifar-10-batches-bin` subfolder.
fn batches_dir(path: &Path) -> PathBuf {
    let nested = path.join("cifar-10-batches-bin");
    if !path.join(TRAIN_FILES[0]).exists() && nested.is_dir() {
        nested
    } else {
        path.to_path_buf()
    }
}

/// Reads one batch file.
///
/// # Errors
/// Missing file, a size that is not a positive multiple of 3,073 bytes, a label above 9.
pub fn read_batch(path: &Path) -> Result<ImageSet, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    if bytes.is_empty() {
        return Err(DataError::format(
            path,
            format!("empty file; expected {RECORD_BYTES}-byte CIFAR-10 records"),
        ));
    }
    if bytes.len() % RECORD_BYTES != 0 {
        return Err(DataError::format(
            path,
            format!(
                "{} bytes is not a whole number of {RECORD_BYTES}-byte CIFAR-10 records (1 label + 3,072 pixels)",
                bytes.len()
            ),
        ));
    }
    let n = bytes.len() / RECORD_BYTES;
    let mut labels = Vec::with_capacity(n);
    let mut pixels = Vec::with_capacity(n * (RECORD_BYTES - 1));
    for record in bytes.chunks_exact(RECORD_BYTES) {
        labels.push(record[0]);
        pixels.extend_from_slice(&record[1..]);
    }
    check_labels(path, &labels, CLASSES)?;
    Ok(ImageSet {
        pixels,
        labels,
        shape: Shape { c: 3, h: 32, w: 32 },
    })
}

pub(crate) fn load(path: &Path, test: bool) -> Result<Raw, DataError> {
    let dir = batches_dir(path);
    let mut train = ImageSet {
        pixels: Vec::new(),
        labels: Vec::new(),
        shape: Shape { c: 3, h: 32, w: 32 },
    };
    for file in TRAIN_FILES {
        let batch = read_batch(&dir.join(file)).map_err(|e| match e {
            DataError::Missing { path, .. } => DataError::Missing {
                path,
                expected: format!("the CIFAR-10 training batches {}", TRAIN_FILES.join(", ")),
            },
            other => other,
        })?;
        train.pixels.extend_from_slice(&batch.pixels);
        train.labels.extend_from_slice(&batch.labels);
    }
    let test = if test {
        Some(read_batch(&dir.join(TEST_FILE))?)
    } else {
        None
    };
    let class_names = std::fs::read_to_string(dir.join("batches.meta.txt"))
        .map(|text| {
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    Ok(Raw {
        train,
        test,
        classes: CLASSES,
        class_names,
    })
}
