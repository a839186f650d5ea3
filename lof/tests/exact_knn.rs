//! Exact kNN against a naive O(n^2) loop, on data larger than one GEMM tile (2,048).

mod common;

use oodgate_lof::ndarray::Array2;
use oodgate_lof::{ExactIndex, NeighbourLists};

fn naive(x: &Array2<f32>, q: &Array2<f32>, k: usize, exclude_self: bool) -> NeighbourLists {
    let (mut ids, mut dists) = (vec![], vec![]);
    for (i, qr) in q.outer_iter().enumerate() {
        let mut all: Vec<(f64, u32)> = x
            .outer_iter()
            .enumerate()
            .filter(|(j, _)| !(exclude_self && *j == i))
            .map(|(j, xr)| {
                let sq = qr
                    .iter()
                    .zip(xr.iter())
                    .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
                    .sum::<f64>();
                (sq, j as u32)
            })
            .collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for (sq, j) in all.into_iter().take(k) {
            ids.push(j);
            dists.push(sq.sqrt());
        }
    }
    NeighbourLists::new(k, ids, dists)
}

#[test]
fn exact_search_equals_naive_loop() {
    let (n, d, k) = (3001, 24, 15);
    let (mut data, _) = common::clustered(n, d, 7, 0.3, 11);
    // exact duplicates across tile boundaries
    for (src, dst) in [(1, 2047), (2048, 2049), (100, 3000)] {
        let row: Vec<f32> = data[src * d..(src + 1) * d].to_vec();
        data[dst * d..(dst + 1) * d].copy_from_slice(&row);
    }
    let x = Array2::from_shape_vec((n, d), data).unwrap();
    let (qdata, _) = common::clustered(257, d, 7, 0.5, 12);
    let q = Array2::from_shape_vec((257, d), qdata).unwrap();
    let index = ExactIndex::new(x.clone());

    assert_eq!(index.search(q.view(), k), naive(&x, &q, k, false));
    let training = index.search_training(k, None);
    let sub = x.slice(oodgate_lof::ndarray::s![0..400, ..]).to_owned();
    let expect = naive(&x, &sub, k, true);
    for i in 0..400 {
        assert_eq!(training.ids(i), expect.ids(i), "row {i}");
        assert_eq!(training.dists(i), expect.dists(i), "row {i}");
    }
    // the rows with duplicates, and the last row
    for i in [2047, 2048, 2049, 3000] {
        let one = x.slice(oodgate_lof::ndarray::s![i..i + 1, ..]).to_owned();
        let all = naive(&x, &one, k + 1, false);
        let expect: Vec<u32> = all
            .ids(0)
            .iter()
            .copied()
            .filter(|&j| j as usize != i)
            .take(k)
            .collect();
        assert_eq!(training.ids(i), expect.as_slice(), "row {i}");
    }
    assert_eq!(training.dists(2047)[0], 0.0);
    assert_eq!(training.ids(2049)[0], 2048);

    // the sample-only variant agrees with the full pass
    let rows = [0, 5, 2047, 2048, 3000];
    let part = index.search_training_rows(&rows, k);
    for (j, &p) in rows.iter().enumerate() {
        assert_eq!(part.ids(j), training.ids(p));
        assert_eq!(part.dists(j), training.dists(p));
    }
}
