//! Batches: shuffled with a seeded generator, augmented on the `u8` pixels (random crop with
//! zero padding, horizontal flip), normalized per channel, cut out, and assembled on a
//! background thread a few batches ahead of training, so the GPU never waits for the CPU side.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread;

use nasop_crds::space::rng::uniform_index;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Tensor};

use super::{ImageSet, Normalization};

/// Batches assembled ahead of the one being trained on.
pub const PREFETCH: usize = 3;

/// Training-time augmentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Augment {
    /// Random crop after zero-padding each side by this many pixels (CIFAR standard: 4).
    pub crop_padding: usize,
    /// Flip horizontally with probability 1/2.
    pub flip: bool,
    /// Zero a random square of this side after normalization (Cutout, DeVries & Taylor 2017,
    /// arXiv 1708.04552; CIFAR-10: 16); 0 = off.
    pub cutout: usize,
}

impl Augment {
    /// No augmentation (evaluation).
    pub const NONE: Augment = Augment {
        crop_padding: 0,
        flip: false,
        cutout: 0,
    };
}

/// One batch. `images`: `[B, C, H, W]` `f32`, normalized; `labels`: `[B]` `i64`.
#[derive(Debug)]
pub struct Batch {
    /// Normalized images.
    pub images: Tensor,
    /// Class indices.
    pub labels: Tensor,
}

/// A batch as the background thread assembles it: plain host memory. The tensors are made on
/// the consuming thread, because a libtorch call on the loader thread would start a second
/// OpenMP team (more threads than cores: OpenMP then sleeps between parallel regions instead
/// of spinning) and can reset the intra-op thread count of the training thread.
#[derive(Debug)]
pub struct HostBatch {
    /// Normalized pixels, `B * C * H * W`.
    pub pixels: Vec<f32>,
    /// Class indices, `B`.
    pub labels: Vec<i64>,
    /// `[B, C, H, W]`.
    pub shape: [i64; 4],
}

/// The batches of one epoch, assembled ahead on a background thread.
#[derive(Debug)]
pub struct Epoch {
    rx: Receiver<HostBatch>,
    pin: Option<Device>,
}

impl Iterator for Epoch {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        let host = self.rx.recv().ok()?;
        let images = Tensor::from_slice(&host.pixels).view(host.shape);
        let labels = Tensor::from_slice(&host.labels);
        Some(match self.pin {
            Some(device) => Batch {
                images: images.pin_memory(device),
                labels: labels.pin_memory(device),
            },
            None => Batch { images, labels },
        })
    }
}

/// How to serve a set: batch size, augmentation, shuffling.
#[derive(Clone, Debug)]
pub struct Loader {
    set: Arc<ImageSet>,
    /// `lut[c][p]`: the normalized value of pixel value `p` in channel `c`.
    lut: Arc<Vec<[f32; 256]>>,
    batch_size: usize,
    augment: Augment,
    /// Shuffle with this seed (a new permutation each epoch); `None` keeps the order.
    shuffle: Option<u64>,
    /// Drop a last batch smaller than `batch_size` (training: keeps batch-norm statistics sane).
    drop_last: bool,
    /// Pin host memory for this CUDA device, so copies to it can run asynchronously.
    pin: Option<Device>,
}

impl Loader {
    /// A loader over `set` normalized with `norm`.
    ///
    /// # Panics
    /// When `batch_size` is 0 or `norm` has a different number of channels than the set.
    pub fn new(set: Arc<ImageSet>, norm: &Normalization, batch_size: usize) -> Self {
        assert!(batch_size > 0, "batch size must be positive");
        assert_eq!(
            norm.mean.len(),
            set.shape.c as usize,
            "one mean per channel"
        );
        let lut = norm
            .mean
            .iter()
            .zip(&norm.std)
            .map(|(&m, &s)| std::array::from_fn(|p| (p as f32 / 255.0 - m) / s))
            .collect();
        Self {
            set,
            lut: Arc::new(lut),
            batch_size,
            augment: Augment::NONE,
            shuffle: None,
            drop_last: false,
            pin: None,
        }
    }

    /// Training mode: shuffle with `seed`, augment, drop the last partial batch (unless the set
    /// is smaller than one batch).
    pub fn training(mut self, seed: u64, augment: Augment) -> Self {
        self.shuffle = Some(seed);
        self.augment = augment;
        self.drop_last = self.set.len() >= self.batch_size;
        self
    }

    /// Pin batches in host memory for asynchronous copies to `device` (CUDA only).
    pub fn pinned_for(mut self, device: Device) -> Self {
        self.pin = device.is_cuda().then_some(device);
        self
    }

    /// Batches per epoch.
    pub fn batches_per_epoch(&self) -> usize {
        let n = self.set.len();
        if self.drop_last {
            n / self.batch_size
        } else {
            n.div_ceil(self.batch_size)
        }
    }

    /// The example order of `epoch`: a seeded Fisher-Yates permutation when shuffling (stream
    /// `epoch` of ChaCha8 seeded with the seed), else `0..len`.
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.set.len()).collect();
        if let Some(seed) = self.shuffle {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(epoch);
            for i in (1..order.len()).rev() {
                order.swap(i, uniform_index(&mut rng, i + 1));
            }
        }
        order
    }

    /// Starts assembling the batches of `epoch` on a background thread (which makes no
    /// libtorch calls); iterate the result. Dropping it early stops the thread.
    pub fn epoch(&self, epoch: u64) -> Epoch {
        let (tx, rx) = sync_channel(PREFETCH);
        let this = self.clone();
        thread::spawn(move || {
            let order = this.order(epoch);
            // Augmentation randomness: its own stream, so it never shifts the shuffle.
            let mut rng = this.shuffle.map(|seed| {
                let mut r = ChaCha8Rng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15);
                r.set_stream(epoch);
                r
            });
            for b in 0..this.batches_per_epoch() {
                let end = ((b + 1) * this.batch_size).min(order.len());
                let batch = this.assemble(&order[b * this.batch_size..end], rng.as_mut());
                if tx.send(batch).is_err() {
                    return;
                }
            }
        });
        Epoch { rx, pin: self.pin }
    }

    /// Builds one batch from the images at `indices`.
    pub fn assemble(&self, indices: &[usize], mut rng: Option<&mut ChaCha8Rng>) -> HostBatch {
        let shape = self.set.shape;
        let (c, h, w) = (shape.c as usize, shape.h as usize, shape.w as usize);
        let n = c * h * w;
        let mut pixels = vec![0f32; indices.len() * n];
        let mut labels = Vec::with_capacity(indices.len());
        for (slot, &i) in indices.iter().enumerate() {
            let out = &mut pixels[slot * n..(slot + 1) * n];
            let (dy, dx, flip, cut) = match rng.as_deref_mut() {
                Some(r) => self.draw(r, h, w),
                None => (0, 0, false, None),
            };
            self.write_image(self.set.image(i), out, (h, w), (dy, dx), flip);
            if let Some((cy, cx)) = cut {
                cutout(out, (c, h, w), (cy, cx), self.augment.cutout);
            }
            labels.push(i64::from(self.set.labels[i]));
        }
        HostBatch {
            pixels,
            labels,
            shape: [indices.len() as i64, c as i64, h as i64, w as i64],
        }
    }

    /// Draws the crop offsets (relative to the padded image), flip and cutout centre.
    fn draw(
        &self,
        rng: &mut ChaCha8Rng,
        h: usize,
        w: usize,
    ) -> (isize, isize, bool, Option<(usize, usize)>) {
        let a = self.augment;
        let p = a.crop_padding;
        let (dy, dx) = if p > 0 {
            (
                uniform_index(rng, 2 * p + 1) as isize - p as isize,
                uniform_index(rng, 2 * p + 1) as isize - p as isize,
            )
        } else {
            (0, 0)
        };
        let flip = a.flip && rng.next_u32() & 1 == 1;
        let cut = (a.cutout > 0).then(|| (uniform_index(rng, h), uniform_index(rng, w)));
        (dy, dx, flip, cut)
    }

    /// Writes one normalized image, shifted by `(dy, dx)` (zero pixels where the shift leaves
    /// the source) and optionally mirrored.
    fn write_image(
        &self,
        src: &[u8],
        out: &mut [f32],
        (h, w): (usize, usize),
        (dy, dx): (isize, isize),
        flip: bool,
    ) {
        let plane = h * w;
        for (ch, lut) in self.lut.iter().enumerate() {
            let zero = lut[0];
            let src = &src[ch * plane..(ch + 1) * plane];
            let out = &mut out[ch * plane..(ch + 1) * plane];
            for y in 0..h {
                let row = &mut out[y * w..(y + 1) * w];
                let sy = y as isize + dy;
                if sy < 0 || sy >= h as isize {
                    row.fill(zero);
                    continue;
                }
                let src_row = &src[sy as usize * w..(sy as usize + 1) * w];
                for (x, value) in row.iter_mut().enumerate() {
                    let xx = if flip { w - 1 - x } else { x };
                    let sx = xx as isize + dx;
                    *value = if sx < 0 || sx >= w as isize {
                        zero
                    } else {
                        lut[usize::from(src_row[sx as usize])]
                    };
                }
            }
        }
    }
}

/// Zeroes a `side x side` square centred at `(cy, cx)` (clipped to the image) in every channel.
fn cutout(
    out: &mut [f32],
    (c, h, w): (usize, usize, usize),
    (cy, cx): (usize, usize),
    side: usize,
) {
    let half = side / 2;
    let (y0, y1) = (cy.saturating_sub(half), (cy + side - half).min(h));
    let (x0, x1) = (cx.saturating_sub(half), (cx + side - half).min(w));
    for ch in 0..c {
        for y in y0..y1 {
            let start = ch * h * w + y * w;
            out[start + x0..start + x1].fill(0.0);
        }
    }
}
