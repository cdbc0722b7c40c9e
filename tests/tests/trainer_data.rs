//! Datasets of nasop-trainer: CIFAR-10 binary batches, Fashion-MNIST IDX files (the shipped
//! subset), image folders, bad data, and the batch loader (shuffle, augmentation, normalization).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use nasop_tests::{shared_data_dir, workspace_root};
use nasop_trainer::data::loader::{Augment, Loader};
use nasop_trainer::data::{self, DataError, DataFormat, DataOptions, ImageSet, Normalization};
use nasop_trainer::net::Shape;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn options(format: DataFormat, path: &Path) -> DataOptions {
    DataOptions {
        format,
        path: path.to_path_buf(),
        train_examples: None,
        validation_examples: None,
        test: false,
        image_size: None,
    }
}

fn cifar_dir() -> std::path::PathBuf {
    shared_data_dir().join("cifar10/cifar-10-batches-bin")
}

#[test]
fn cifar10_loads_all_batches_with_the_published_channel_means() {
    let mut o = options(DataFormat::Cifar10, &shared_data_dir().join("cifar10"));
    o.test = true;
    o.validation_examples = Some(1);
    let splits = data::load(&o).unwrap();
    assert_eq!(splits.train.len(), 49_999);
    assert_eq!(splits.validation.len(), 1);
    assert_eq!(splits.test.as_ref().unwrap().len(), 10_000);
    assert_eq!(splits.train.shape, Shape { c: 3, h: 32, w: 32 });
    assert_eq!(splits.classes, 10);
    assert_eq!(
        splits.class_names.first().map(String::as_str),
        Some("airplane")
    );
    let mut counts = [0usize; 10];
    for &l in splits.train.labels.iter().chain(&splits.validation.labels) {
        counts[usize::from(l)] += 1;
    }
    assert_eq!(counts, [5000; 10]);
    // The data README: training-set channel means 0.4913 / 0.4821 / 0.4465.
    let norm = Normalization::of(&splits.train);
    for (m, expected) in norm.mean.iter().zip([0.4913, 0.4821, 0.4465]) {
        assert!(
            (f64::from(*m) - expected).abs() < 5e-4,
            "mean {m} vs {expected}"
        );
    }
    // Default split: NASNet's 5,000 of 50,000 held out (10%).
    let splits = data::load(&options(DataFormat::Cifar10, &cifar_dir())).unwrap();
    assert_eq!(
        (splits.train.len(), splits.validation.len()),
        (45_000, 5_000)
    );
    assert!(splits.test.is_none());
}

#[test]
fn cifar10_train_examples_take_the_first_n_and_sizes_are_checked() {
    let mut o = options(DataFormat::Cifar10, &cifar_dir());
    o.train_examples = Some(1000);
    o.validation_examples = Some(500);
    let s = data::load(&o).unwrap();
    assert_eq!((s.train.len(), s.validation.len()), (1000, 500));
    let full = cifar10_batch_1();
    assert_eq!(s.train.image(999), full.image(999));
    o.train_examples = Some(49_600);
    let err = data::load(&o).unwrap_err().to_string();
    assert_eq!(err, "--train-examples: 49600 is out of range; allowed: 1..=49500 (50000 examples minus 500 held out for validation)");
    o.train_examples = None;
    o.validation_examples = Some(50_000);
    let err = data::load(&o).unwrap_err().to_string();
    assert_eq!(err, "--validation-examples: 50000 is out of range; allowed: 1..=49999 (the training set has 50000)");
}

fn cifar10_batch_1() -> ImageSet {
    nasop_trainer::data::cifar::read_batch(&cifar_dir().join("data_batch_1.bin")).unwrap()
}

/// A CIFAR-10 folder of five batches with the given records (label, fill byte).
fn fake_cifar(records: &[(u8, u8)], extra_bytes: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in nasop_trainer::data::cifar::TRAIN_FILES {
        let mut f = std::fs::File::create(dir.path().join(name)).unwrap();
        for &(label, fill) in records {
            f.write_all(&[label]).unwrap();
            f.write_all(&[fill; 3072]).unwrap();
        }
        f.write_all(&vec![0; extra_bytes]).unwrap();
    }
    dir
}

#[test]
fn bad_cifar10_files_get_clear_errors() {
    let missing = tempfile::tempdir().unwrap();
    let err = data::load(&options(DataFormat::Cifar10, missing.path())).unwrap_err();
    assert!(matches!(err, DataError::Missing { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("data_batch_1.bin: missing; expected the CIFAR-10 training batches"),
        "{err}"
    );

    let dir = fake_cifar(&[(1, 7), (2, 9)], 5);
    let err = data::load(&options(DataFormat::Cifar10, dir.path()))
        .unwrap_err()
        .to_string();
    assert!(err.ends_with("data_batch_1.bin: 6151 bytes is not a whole number of 3073-byte CIFAR-10 records (1 label + 3,072 pixels)"), "{err}");

    let dir = fake_cifar(&[(1, 7), (10, 9)], 0);
    let err = data::load(&options(DataFormat::Cifar10, dir.path()))
        .unwrap_err()
        .to_string();
    assert!(
        err.ends_with("data_batch_1.bin: record 1 has label 10; allowed: 0..=9"),
        "{err}"
    );

    let dir = fake_cifar(&[], 0);
    let err = data::load(&options(DataFormat::Cifar10, dir.path()))
        .unwrap_err()
        .to_string();
    assert!(
        err.ends_with("data_batch_1.bin: empty file; expected 3073-byte CIFAR-10 records"),
        "{err}"
    );

    let file = dir.path().join("data_batch_1.bin");
    let err = data::load(&options(DataFormat::Cifar10, &file))
        .unwrap_err()
        .to_string();
    assert!(
        err.ends_with("data_batch_1.bin: not a folder; expected a folder of cifar10 files"),
        "{err}"
    );

    let dir = fake_cifar(&[(3, 1), (4, 2)], 0);
    let s = data::load(&options(DataFormat::Cifar10, dir.path())).unwrap();
    assert_eq!((s.train.len(), s.validation.len()), (9, 1));
    assert_eq!(s.validation.labels, vec![4]);
    assert!(s.validation.pixels.iter().all(|&p| p == 2));

    let dir = fake_cifar(&[(3, 1), (4, 2)], 0);
    let mut o = options(DataFormat::Cifar10, dir.path());
    o.test = true;
    let err = data::load(&o).unwrap_err().to_string();
    assert!(err.contains("test_batch.bin: missing"), "{err}");
}

fn fashion_dir() -> std::path::PathBuf {
    workspace_root().join("data/fashion-mnist")
}

#[test]
fn the_shipped_fashion_mnist_subset_loads_with_its_class_names() {
    let mut o = options(DataFormat::FashionMnist, &fashion_dir());
    o.test = true;
    let s = data::load(&o).unwrap();
    assert_eq!(
        (
            s.train.len(),
            s.validation.len(),
            s.test.as_ref().unwrap().len()
        ),
        (5400, 600, 1000)
    );
    assert_eq!(s.train.shape, Shape { c: 1, h: 28, w: 28 });
    assert_eq!(s.class_names[9], "Ankle boot");
    assert!(s.train.labels.iter().all(|&l| l < 10));
    // Fashion-MNIST's pixel mean is about 0.286.
    let norm = Normalization::of(&s.train);
    assert!((norm.mean[0] - 0.286).abs() < 0.01, "{:?}", norm.mean);
}

fn write_idx(dir: &Path, prefix: &str, images: &[u8], n: u32, labels: &[u8], n_labels: u32) {
    let mut img = vec![0, 0, 8, 3];
    img.extend(n.to_be_bytes());
    img.extend(2u32.to_be_bytes());
    img.extend(2u32.to_be_bytes());
    img.extend(images);
    std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), img).unwrap();
    let mut lab = vec![0, 0, 8, 1];
    lab.extend(n_labels.to_be_bytes());
    lab.extend(labels);
    std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), lab).unwrap();
}

#[test]
fn idx_files_plain_or_gzipped_and_their_errors() {
    let dir = tempfile::tempdir().unwrap();
    write_idx(
        dir.path(),
        "train",
        &[1, 2, 3, 4, 5, 6, 7, 8],
        2,
        &[0, 9],
        2,
    );
    let s = data::load(&options(DataFormat::Mnist, dir.path())).unwrap();
    assert_eq!(s.train.pixels, vec![1, 2, 3, 4]);
    assert_eq!(s.validation.labels, vec![9]);
    assert_eq!(s.train.shape, Shape { c: 1, h: 2, w: 2 });

    write_idx(dir.path(), "train", &[1, 2, 3, 4, 5, 6, 7], 2, &[0, 9], 2);
    let err = data::load(&options(DataFormat::Mnist, dir.path()))
        .unwrap_err()
        .to_string();
    assert!(
        err.ends_with("header says 2 images of 2x2, which does not match the file's 23 bytes"),
        "{err}"
    );

    write_idx(dir.path(), "train", &[1, 2, 3, 4, 5, 6, 7, 8], 2, &[0], 1);
    let err = data::load(&options(DataFormat::Mnist, dir.path()))
        .unwrap_err()
        .to_string();
    assert!(err.ends_with("1 labels for 2 images"), "{err}");

    write_idx(
        dir.path(),
        "train",
        &[1, 2, 3, 4, 5, 6, 7, 8],
        2,
        &[0, 12],
        2,
    );
    let err = data::load(&options(DataFormat::Mnist, dir.path()))
        .unwrap_err()
        .to_string();
    assert!(
        err.ends_with("record 1 has label 12; allowed: 0..=9"),
        "{err}"
    );

    std::fs::write(
        dir.path().join("train-images-idx3-ubyte"),
        b"\x00\x00\x08\x01rest",
    )
    .unwrap();
    let err = data::load(&options(DataFormat::Mnist, dir.path()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("not an IDX image file"), "{err}");

    let gz = tempfile::tempdir().unwrap();
    std::fs::write(gz.path().join("train-images-idx3-ubyte.gz"), b"not gzip").unwrap();
    std::fs::write(gz.path().join("train-labels-idx1-ubyte.gz"), b"not gzip").unwrap();
    let err = data::load(&options(DataFormat::FashionMnist, gz.path()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("train-images-idx3-ubyte.gz: not a valid gzip file"),
        "{err}"
    );

    let empty = tempfile::tempdir().unwrap();
    let err = data::load(&options(DataFormat::FashionMnist, empty.path()))
        .unwrap_err()
        .to_string();
    assert!(err.ends_with("train-images-idx3-ubyte: missing; expected train-images-idx3-ubyte or train-images-idx3-ubyte.gz (IDX format)"), "{err}");
}

fn write_png(path: &Path, side: u32, rgb: [u8; 3]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_pixel(side, side, image::Rgb(rgb))
        .save(path)
        .unwrap();
}

#[test]
fn image_folders_resize_label_by_sorted_class_and_check_the_layout() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..6 {
        write_png(
            &dir.path().join(format!("train/cat/{i}.png")),
            8,
            [200, 10, 10],
        );
        write_png(
            &dir.path().join(format!("train/ant/{i}.png")),
            12,
            [10, 10, 200],
        );
    }
    write_png(&dir.path().join("test/cat/0.png"), 8, [200, 10, 10]);
    write_png(&dir.path().join("test/ant/0.png"), 8, [10, 10, 200]);
    std::fs::write(dir.path().join("train/cat/notes.txt"), "not an image").unwrap();
    let mut o = options(DataFormat::ImageFolder, dir.path());
    o.image_size = Some(16);
    o.test = true;
    o.validation_examples = Some(4);
    let s = data::load(&o).unwrap();
    assert_eq!(s.class_names, vec!["ant", "cat"]);
    assert_eq!(s.train.shape, Shape { c: 3, h: 16, w: 16 });
    assert_eq!(s.train.len() + s.validation.len(), 12);
    let test = s.test.unwrap();
    assert_eq!(test.labels, vec![0, 1]);
    // Planes are channel-major: an "ant" image is blue.
    let ant = test.image(0);
    assert!(ant[..256].iter().all(|&p| p == 10) && ant[512..].iter().all(|&p| p == 200));
    // The fixed shuffle mixes the classes into the held-out examples.
    let mut all = s.train.labels.clone();
    all.extend(&s.validation.labels);
    assert_ne!(all, {
        let mut sorted = all.clone();
        sorted.sort();
        sorted
    });

    std::fs::remove_dir_all(dir.path().join("test/ant")).unwrap();
    let err = data::load(&o).unwrap_err().to_string();
    assert!(
        err.contains("test/ant: missing; expected a folder of images of class \"ant\""),
        "{err}"
    );

    let empty = tempfile::tempdir().unwrap();
    let err = data::load(&options(DataFormat::ImageFolder, empty.path()))
        .unwrap_err()
        .to_string();
    assert!(
        err.ends_with("missing; expected one subfolder of images per class"),
        "{err}"
    );

    // Degenerate layouts: an empty class, a class only in test/, a single class, bad sizes.
    let odd = tempfile::tempdir().unwrap();
    for i in 0..3 {
        write_png(&odd.path().join(format!("train/a/{i}.png")), 8, [1, 2, 3]);
        write_png(&odd.path().join(format!("train/b/{i}.png")), 8, [4, 5, 6]);
    }
    std::fs::create_dir_all(odd.path().join("train/c")).unwrap();
    let err = data::load(&options(DataFormat::ImageFolder, odd.path()))
        .unwrap_err()
        .to_string();
    assert!(err.ends_with("train/c: class \"c\" has no images (png, jpg, jpeg, bmp); remove the folder or add images"), "{err}");
    std::fs::remove_dir(odd.path().join("train/c")).unwrap();
    write_png(&odd.path().join("test/a/0.png"), 8, [1, 2, 3]);
    write_png(&odd.path().join("test/b/0.png"), 8, [1, 2, 3]);
    write_png(&odd.path().join("test/z/0.png"), 8, [1, 2, 3]);
    let mut with_test = options(DataFormat::ImageFolder, odd.path());
    with_test.test = true;
    let err = data::load(&with_test).unwrap_err().to_string();
    assert!(
        err.ends_with("test/z: class \"z\" is not a class of the training set (a, b)"),
        "{err}"
    );
    std::fs::remove_dir_all(odd.path().join("train/b")).unwrap();
    let err = data::load(&options(DataFormat::ImageFolder, odd.path()))
        .unwrap_err()
        .to_string();
    assert!(
        err.ends_with("train: 1 class folder; a classifier needs at least 2"),
        "{err}"
    );
    write_png(&odd.path().join("train/b/0.png"), 5000, [1, 2, 3]);
    std::fs::remove_dir_all(odd.path().join("train/a")).unwrap();
    write_png(&odd.path().join("train/a/0.png"), 5000, [1, 2, 3]);
    let err = data::load(&options(DataFormat::ImageFolder, odd.path()))
        .unwrap_err()
        .to_string();
    assert!(err.ends_with("0.png: the first image is 5000x5000; images must be 8..=4096 pixels per side (pass --image-size to resize)"), "{err}");

    let broken = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(broken.path().join("a")).unwrap();
    std::fs::write(broken.path().join("a/x.png"), "garbage").unwrap();
    write_png(&broken.path().join("b/0.png"), 8, [1, 2, 3]);
    let err = data::load(&options(DataFormat::ImageFolder, broken.path()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("x.png: cannot decode image"), "{err}");
}

/// A set of `n` 1x4x4 images whose pixels encode (image, position): `16 * (i % 8) + position`.
fn numbered(n: usize) -> ImageSet {
    let pixels = (0..n)
        .flat_map(|i| (0..16).map(move |p| (16 * (i % 8) + p) as u8))
        .collect();
    ImageSet {
        pixels,
        labels: (0..n).map(|i| (i % 10) as u8).collect(),
        shape: Shape { c: 1, h: 4, w: 4 },
    }
}

/// Mean 0, standard deviation 1: a pixel `p` becomes `p / 255`.
fn identity_norm() -> Normalization {
    Normalization {
        mean: vec![0.0],
        std: vec![1.0],
    }
}

fn px(p: i32) -> f32 {
    p as f32 / 255.0
}

#[test]
fn loader_shuffles_per_epoch_deterministically_and_covers_every_example() {
    let loader =
        Loader::new(Arc::new(numbered(100)), &identity_norm(), 16).training(42, Augment::NONE);
    let a = loader.order(0);
    assert_eq!(a, loader.order(0));
    assert_ne!(a, loader.order(1));
    let mut sorted = a.clone();
    sorted.sort();
    assert_eq!(sorted, (0..100).collect::<Vec<_>>());
    assert_ne!(a, (0..100).collect::<Vec<_>>());
    let other =
        Loader::new(Arc::new(numbered(100)), &identity_norm(), 16).training(43, Augment::NONE);
    assert_ne!(a, other.order(0));
    // Training drops the partial last batch; evaluation keeps it.
    assert_eq!(loader.batches_per_epoch(), 6);
    assert_eq!(loader.epoch(0).count(), 6);
    let eval = Loader::new(Arc::new(numbered(100)), &identity_norm(), 16);
    assert_eq!(eval.batches_per_epoch(), 7);
    let batches: Vec<_> = eval.epoch(0).collect();
    assert_eq!(batches.last().unwrap().images.size(), [4, 1, 4, 4]);
    let labels: Vec<i64> = batches
        .iter()
        .flat_map(|b| Vec::<i64>::try_from(&b.labels).unwrap())
        .collect();
    assert_eq!(labels, (0..100).map(|i| i % 10).collect::<Vec<i64>>());
}

#[test]
fn augmentation_shifts_flips_and_cuts_out_and_normalizes() {
    let set = numbered(8);
    let norm = identity_norm();
    // No augmentation: the pixels themselves, scaled to [0, 1].
    let plain = Loader::new(Arc::new(set.clone()), &norm, 8).assemble(&[3], None);
    assert_eq!(
        plain.pixels,
        (0..16).map(|p| px(48 + p)).collect::<Vec<f32>>()
    );
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let flips = Loader::new(Arc::new(set.clone()), &norm, 8).training(
        1,
        Augment {
            crop_padding: 0,
            flip: true,
            cutout: 0,
        },
    );
    let mut mirrored = 0;
    for _ in 0..40 {
        let b = flips.assemble(&[3], Some(&mut rng));
        let rows: Vec<Vec<f32>> = b.pixels.chunks(4).map(<[f32]>::to_vec).collect();
        let original: Vec<Vec<f32>> = plain.pixels.chunks(4).map(<[f32]>::to_vec).collect();
        let flipped: Vec<Vec<f32>> = original
            .iter()
            .map(|r| r.iter().rev().copied().collect())
            .collect();
        assert!(rows == original || rows == flipped);
        mirrored += usize::from(rows == flipped);
    }
    assert!((10..=30).contains(&mirrored), "{mirrored} of 40 flipped");
    // Crops: every output pixel is the source pixel at a fixed offset, or zero padding.
    let crops = Loader::new(Arc::new(set.clone()), &norm, 8).training(
        1,
        Augment {
            crop_padding: 2,
            flip: false,
            cutout: 0,
        },
    );
    let mut offsets = std::collections::HashSet::new();
    for _ in 0..60 {
        let b = crops.assemble(&[0], Some(&mut rng));
        let offset = (-2i32..=2)
            .flat_map(|dy| (-2i32..=2).map(move |dx| (dy, dx)))
            .find(|&(dy, dx)| {
                (0..4).all(|y| {
                    (0..4).all(|x| {
                        let (sy, sx) = (y + dy, x + dx);
                        let expected = if (0..4).contains(&sy) && (0..4).contains(&sx) {
                            px(sy * 4 + sx)
                        } else {
                            0.0
                        };
                        b.pixels[(y * 4 + x) as usize] == expected
                    })
                })
            });
        offsets.insert(offset.expect("output is a shifted, zero-padded copy"));
    }
    assert!(
        offsets.len() >= 15,
        "{} distinct offsets of 25",
        offsets.len()
    );
    // Cutout zeroes at most a side x side square.
    let cut = Loader::new(Arc::new(numbered(8)), &identity_norm(), 8).training(
        1,
        Augment {
            crop_padding: 0,
            flip: false,
            cutout: 2,
        },
    );
    for _ in 0..20 {
        let b = cut.assemble(&[7], Some(&mut rng));
        let zeros = b.pixels.iter().filter(|&&p| p == 0.0).count();
        assert!((1..=4).contains(&zeros), "{zeros} zeroed pixels");
    }
}

#[test]
fn normalized_batches_have_zero_mean_and_unit_variance() {
    let s = data::load(&options(DataFormat::FashionMnist, &fashion_dir())).unwrap();
    let norm = Normalization::of(&s.train);
    let n = s.train.len();
    let loader = Loader::new(Arc::new(s.train), &norm, n);
    let batch = loader.epoch(0).next().unwrap();
    let mean = f64::try_from(batch.images.mean(tch::Kind::Double)).unwrap();
    let std = f64::try_from(batch.images.std(true)).unwrap();
    assert!(
        mean.abs() < 1e-3 && (std - 1.0).abs() < 1e-3,
        "mean {mean} std {std}"
    );
}
