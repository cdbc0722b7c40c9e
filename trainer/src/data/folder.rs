//! Image folders: `<path>/train/<class>/<image>` (and `<path>/test/<class>/<image>`), or
//! `<path>/<class>/<image>` without a test set. Classes are the subfolder names in sorted order;
//! images are PNG, JPEG or BMP files, converted to RGB and resized (bilinear) to one square
//! size. Training images are put in a fixed pseudo-random order (seed 0), so that the
//! validation examples held out from the end cover every class.

use std::path::{Path, PathBuf};

use nasop_crds::space::rng::uniform_index;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{DataError, ImageSet, Raw};
use crate::net::Shape;

/// File extensions read as images (case-insensitive).
pub const EXTENSIONS: [&str; 4] = ["png", "jpg", "jpeg", "bmp"];
/// Most classes a folder may have (labels are bytes).
pub const MAX_CLASSES: usize = 256;
/// Smallest image side the networks take, pixels.
pub const MIN_SIDE: u32 = 8;
/// Largest image side the networks take, pixels.
pub const MAX_SIDE: u32 = 4096;

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| DataError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    Ok(entries)
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// Reads one split folder with the given classes (subfolders), resizing to `size`.
fn read_split(
    dir: &Path,
    classes: &[String],
    size: &mut Option<u32>,
) -> Result<ImageSet, DataError> {
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for (label, class) in classes.iter().enumerate() {
        let class_dir = dir.join(class);
        if !class_dir.is_dir() {
            return Err(DataError::Missing {
                path: class_dir,
                expected: format!("a folder of images of class {class:?} (every class of train/ must be in test/)"),
            });
        }
        let files: Vec<PathBuf> = sorted_entries(&class_dir)?
            .into_iter()
            .filter(|p| is_image(p))
            .collect();
        if files.is_empty() {
            return Err(DataError::format(
                &class_dir,
                format!(
                    "class {class:?} has no images ({}); remove the folder or add images",
                    EXTENSIONS.join(", ")
                ),
            ));
        }
        for file in files {
            let image = image::open(&file)
                .map_err(|e| DataError::format(&file, format!("cannot decode image: {e}")))?
                .to_rgb8();
            if size.is_none() {
                let (w, h) = image.dimensions();
                if !(MIN_SIDE..=MAX_SIDE).contains(&w.max(h)) || w.min(h) < MIN_SIDE {
                    return Err(DataError::format(
                        &file,
                        format!("the first image is {w}x{h}; images must be {MIN_SIDE}..={MAX_SIDE} pixels per side (pass --image-size to resize)"),
                    ));
                }
            }
            let side = *size.get_or_insert(image.width());
            let image = if image.width() != side || image.height() != side {
                image::imageops::resize(&image, side, side, image::imageops::FilterType::Triangle)
            } else {
                image
            };
            // HWC (interleaved RGB) to CHW planes.
            let plane = (side * side) as usize;
            let raw = image.as_raw();
            let start = pixels.len();
            pixels.resize(start + 3 * plane, 0);
            for (i, rgb) in raw.chunks_exact(3).enumerate() {
                for c in 0..3 {
                    pixels[start + c * plane + i] = rgb[c];
                }
            }
            labels.push(label as u8);
        }
    }
    let side = i64::from(size.unwrap_or(0));
    Ok(ImageSet {
        pixels,
        labels,
        shape: Shape {
            c: 3,
            h: side,
            w: side,
        },
    })
}

/// A fixed pseudo-random permutation of a set (seed 0).
fn shuffled(set: ImageSet) -> ImageSet {
    let mut order: Vec<usize> = (0..set.len()).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    for i in (1..order.len()).rev() {
        order.swap(i, uniform_index(&mut rng, i + 1));
    }
    let n = set.shape.elements() as usize;
    let mut pixels = Vec::with_capacity(set.pixels.len());
    for &i in &order {
        pixels.extend_from_slice(&set.pixels[i * n..(i + 1) * n]);
    }
    ImageSet {
        pixels,
        labels: order.iter().map(|&i| set.labels[i]).collect(),
        shape: set.shape,
    }
}

pub(crate) fn load(path: &Path, test: bool, size: Option<u32>) -> Result<Raw, DataError> {
    let train_dir = if path.join("train").is_dir() {
        path.join("train")
    } else {
        path.to_path_buf()
    };
    let classes: Vec<String> = sorted_entries(&train_dir)?
        .into_iter()
        .filter(|p| p.is_dir())
        .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(String::from))
        .filter(|n| n != "test")
        .collect();
    if classes.is_empty() {
        return Err(DataError::Missing {
            path: train_dir,
            expected: "one subfolder of images per class".into(),
        });
    }
    if classes.len() > MAX_CLASSES {
        return Err(DataError::format(
            &train_dir,
            format!(
                "{} classes; at most {MAX_CLASSES} are supported",
                classes.len()
            ),
        ));
    }
    if let Some(side) = size.filter(|s| !(MIN_SIDE..=MAX_SIDE).contains(s)) {
        return Err(DataError::Split(format!(
            "--image-size: {side} is out of range; allowed: {MIN_SIDE}..={MAX_SIDE}"
        )));
    }
    if classes.len() < 2 {
        return Err(DataError::format(
            &train_dir,
            format!(
                "{} class folder; a classifier needs at least 2",
                classes.len()
            ),
        ));
    }
    let mut size = size;
    let train = shuffled(read_split(&train_dir, &classes, &mut size)?);
    if train.is_empty() {
        return Err(DataError::Split(format!(
            "{}: no images ({}) in the class folders",
            train_dir.display(),
            EXTENSIONS.join(", ")
        )));
    }
    let test = if test {
        let test_dir = path.join("test");
        if !test_dir.is_dir() {
            return Err(DataError::Missing {
                path: test_dir,
                expected: "a test/ folder with the same class folders".into(),
            });
        }
        for entry in sorted_entries(&test_dir)?
            .into_iter()
            .filter(|p| p.is_dir())
        {
            let name = entry
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            if !classes.contains(&name) {
                return Err(DataError::format(
                    &entry,
                    format!(
                        "class {name:?} is not a class of the training set ({})",
                        classes.join(", ")
                    ),
                ));
            }
        }
        Some(read_split(&test_dir, &classes, &mut size)?)
    } else {
        None
    };
    Ok(Raw {
        train,
        test,
        classes: classes.len(),
        class_names: classes,
    })
}
