//! MNIST and Fashion-MNIST in the IDX format (LeCun et al.; Xiao et al. 2017, arXiv 1708.07747):
//! `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`,
//! `t10k-labels-idx1-ubyte`, each optionally gzipped (`.gz`, as distributed and as Debian's
//! `dataset-fashion-mnist` installs them).

use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use super::{check_labels, DataError, ImageSet, Raw};
use crate::net::Shape;

/// Magic number of an IDX file of unsigned bytes with 3 dimensions (images).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned bytes with 1 dimension (labels).
pub const LABELS_MAGIC: u32 = 0x0000_0801;
/// Classes of MNIST and Fashion-MNIST.
pub const CLASSES: usize = 10;
/// Fashion-MNIST's class names, in label order.
pub const FASHION_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// Finds `<dir>/<stem>` or `<dir>/<stem>.gz`.
fn find(dir: &Path, stem: &str) -> Result<PathBuf, DataError> {
    for candidate in [dir.join(stem), dir.join(format!("{stem}.gz"))] {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(DataError::Missing {
        path: dir.join(stem),
        expected: format!("{stem} or {stem}.gz (IDX format)"),
    })
}

/// Reads a file, decompressing it when it ends in `.gz`.
fn read(path: &Path) -> Result<Vec<u8>, DataError> {
    let raw = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| DataError::format(path, format!("not a valid gzip file: {e}")))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Parses an IDX images file and its labels file into a set of `1 x rows x cols` images.
///
/// # Errors
/// A wrong magic number, a header that does not match the file size, different counts in the
/// two files, an empty file, or a label above 9.
pub fn parse(
    images_path: &Path,
    images: &[u8],
    labels_path: &Path,
    labels: &[u8],
) -> Result<ImageSet, DataError> {
    if images.len() < 16 || be_u32(images, 0) != IMAGES_MAGIC {
        return Err(DataError::format(
            images_path,
            "not an IDX image file (expected magic 0x00000803 and a 16-byte header)",
        ));
    }
    if labels.len() < 8 || be_u32(labels, 0) != LABELS_MAGIC {
        return Err(DataError::format(
            labels_path,
            "not an IDX label file (expected magic 0x00000801 and an 8-byte header)",
        ));
    }
    let (n, rows, cols) = (
        be_u32(images, 4) as usize,
        be_u32(images, 8) as usize,
        be_u32(images, 12) as usize,
    );
    let expected = n
        .checked_mul(rows)
        .and_then(|v| v.checked_mul(cols))
        .and_then(|v| v.checked_add(16));
    if expected != Some(images.len()) || rows == 0 || cols == 0 {
        return Err(DataError::format(
            images_path,
            format!(
                "header says {n} images of {rows}x{cols}, which does not match the file's {} bytes",
                images.len()
            ),
        ));
    }
    let n_labels = be_u32(labels, 4) as usize;
    if n_labels + 8 != labels.len() {
        return Err(DataError::format(
            labels_path,
            format!(
                "header says {n_labels} labels, which does not match the file's {} bytes",
                labels.len()
            ),
        ));
    }
    if n_labels != n {
        return Err(DataError::format(
            labels_path,
            format!("{n_labels} labels for {n} images"),
        ));
    }
    let labels = labels[8..].to_vec();
    check_labels(labels_path, &labels, CLASSES)?;
    Ok(ImageSet {
        pixels: images[16..].to_vec(),
        labels,
        shape: Shape {
            c: 1,
            h: rows as i64,
            w: cols as i64,
        },
    })
}

fn read_pair(dir: &Path, prefix: &str) -> Result<ImageSet, DataError> {
    let images_path = find(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let labels_path = find(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    parse(
        &images_path,
        &read(&images_path)?,
        &labels_path,
        &read(&labels_path)?,
    )
}

pub(crate) fn load(path: &Path, test: bool) -> Result<Raw, DataError> {
    let train = read_pair(path, "train")?;
    let test = if test {
        Some(read_pair(path, "t10k")?)
    } else {
        None
    };
    if let Some(t) = &test {
        if t.shape != train.shape {
            return Err(DataError::format(
                path,
                "test images differ in size from training images",
            ));
        }
    }
    Ok(Raw {
        train,
        test,
        classes: CLASSES,
        class_names: Vec::new(),
    })
}
