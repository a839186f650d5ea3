//! Deterministic synthetic data for the tests and the scale example (no RNG crate).

#![allow(dead_code)] // each test crate uses a different part

/// splitmix64: tiny, deterministic, good enough for test data.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(crate) fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    pub(crate) fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform(); // (0, 1]
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// `n` points in `clusters` Gaussian clusters (centres N(0, 1) per axis, then points
/// `spread` around them), row-major, with the cluster as label.
pub(crate) fn clustered(
    n: usize,
    dim: usize,
    clusters: usize,
    spread: f64,
    seed: u64,
) -> (Vec<f32>, Vec<u8>) {
    let mut rng = Rng::new(seed);
    let centres: Vec<Vec<f64>> = (0..clusters)
        .map(|_| (0..dim).map(|_| rng.normal()).collect())
        .collect();
    let mut data = Vec::with_capacity(n * dim);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let c = rng.below(clusters);
        data.extend(
            centres[c]
                .iter()
                .map(|&m| (m + spread * rng.normal()) as f32),
        );
        labels.push(c as u8);
    }
    (data, labels)
}

/// Data shaped like a classifier's L2-constrained embeddings: `clusters` classes, each a
/// `latent`-dimensional Gaussian blob mapped into `dim` dimensions by its own random linear
/// map (so the intrinsic dimension is low, as for real embeddings), plus a little
/// isotropic noise, every row then scaled to norm `radius`.
pub(crate) struct EmbeddingLike {
    dim: usize,
    latent: usize,
    centres: Vec<Vec<f64>>,
    /// Per class, a dim x latent matrix, row-major.
    maps: Vec<Vec<f64>>,
    radius: f64,
}

impl EmbeddingLike {
    pub(crate) fn new(dim: usize, clusters: usize, latent: usize, radius: f64, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let centres = (0..clusters)
            .map(|_| (0..dim).map(|_| rng.normal()).collect())
            .collect();
        let maps = (0..clusters)
            .map(|_| (0..dim * latent).map(|_| 0.25 * rng.normal()).collect())
            .collect();
        Self {
            dim,
            latent,
            centres,
            maps,
            radius,
        }
    }

    /// `n` points of random classes, with their class labels.
    pub(crate) fn sample(&self, n: usize, seed: u64) -> (Vec<f32>, Vec<u8>) {
        let mut rng = Rng::new(seed);
        let mut data = Vec::with_capacity(n * self.dim);
        let mut labels = Vec::with_capacity(n);
        for _ in 0..n {
            let c = rng.below(self.centres.len());
            let z: Vec<f64> = (0..self.latent).map(|_| rng.normal()).collect();
            let row: Vec<f64> = (0..self.dim)
                .map(|i| {
                    let m = &self.maps[c][i * self.latent..(i + 1) * self.latent];
                    self.centres[c][i]
                        + m.iter().zip(&z).map(|(a, b)| a * b).sum::<f64>()
                        + 0.05 * rng.normal()
                })
                .collect();
            let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt();
            data.extend(row.iter().map(|v| (v * self.radius / norm) as f32));
            labels.push(c as u8);
        }
        (data, labels)
    }

    /// `n` points in uniformly random directions at the same radius: out of distribution.
    pub(crate) fn outliers(&self, n: usize, seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        let mut data = Vec::with_capacity(n * self.dim);
        for _ in 0..n {
            let row: Vec<f64> = (0..self.dim).map(|_| rng.normal()).collect();
            let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt();
            data.extend(row.iter().map(|v| (v * self.radius / norm) as f32));
        }
        data
    }
}
