//! SparseGPT (Frantar & Alistarh 2023, "SparseGPT: Massive Language Models Can Be Accurately
//! Pruned in One-Shot"): the layer's inputs give the Hessian of the reconstruction error,
//! `H = 2/n X^T X`, damped by 1% of its mean diagonal; its inverse's upper Cholesky factor `U`
//! drives the optimal-brain-surgeon update. Columns are taken in blocks of 128: a block's mask
//! is the lowest `w^2 / U_jj^2` (or N:M within each row), then column by column each pruned
//! weight's error `(w - q) / U_ii` is spread over the block's later columns by row `i` of `U`,
//! and the block's errors over all later columns by one matrix product. The Hessian, its
//! inverse and both Cholesky factorizations are in f64; the updates, like the reference's,
//! in f32. Reference: github.com/IST-DASLab/sparsegpt (sparsegpt.py, `fasterprune`).

use faer::linalg::matmul::matmul;
use faer::linalg::solvers::DenseSolveCore;
use faer::{Accum, Mat, MatMut, MatRef, Par, Side};

use super::mask::{lowest, select, Group};
use super::{PruneError, Result, WeightJob};

/// Columns per block (the reference's `blocksize`).
const BLOCK: usize = 128;
/// Damping as a fraction of the Hessian's mean diagonal (the reference's `percdamp`).
const DAMP: f64 = 0.01;
/// Tries with ten times the damping each when the damped Hessian is still not positive
/// definite (fewer calibration tokens than inputs leave it singular up to the damping).
const DAMP_TRIES: usize = 4;

/// The inverse Hessian's upper Cholesky factor of one input group, `[cols, cols]` row-major,
/// and which inputs were never active (their weights are zeroed, as the reference does).
pub struct HessianInverse {
    pub u: Vec<f32>,
    pub dead: Vec<bool>,
}

fn par(threads: usize) -> Par {
    if threads > 1 {
        Par::rayon(threads)
    } else {
        Par::Seq
    }
}

/// `U` with `U^T U = (H + damp I)^-1` for `H = 2/n X^T X`, `x: [n, cols]` row-major, damped
/// by the reference's 1% of the mean diagonal.
pub fn hessian_inverse(
    x: &[f32],
    cols: usize,
    threads: usize,
    what: &str,
) -> Result<HessianInverse> {
    hessian_inverse_damped(x, cols, threads, what, DAMP)
}

/// [`hessian_inverse`] damped by `damp` times the mean diagonal.
pub fn hessian_inverse_damped(
    x: &[f32],
    cols: usize,
    threads: usize,
    what: &str,
    damp: f64,
) -> Result<HessianInverse> {
    let n = x.len() / cols.max(1);
    if n == 0 {
        return Err(PruneError::Invalid(format!(
            "{what}: no calibration inputs"
        )));
    }
    let xm = MatRef::from_row_major_slice(x, n, cols);
    let mut h32 = Mat::<f32>::zeros(cols, cols);
    matmul(
        h32.as_mut(),
        Accum::Replace,
        xm.transpose(),
        xm,
        2.0 / n as f32,
        par(threads),
    ); // [cols, cols]
    let mut h = Mat::<f64>::from_fn(cols, cols, |i, j| h32[(i, j)] as f64);
    drop(h32);
    let mut dead = vec![false; cols];
    for (i, d) in dead.iter_mut().enumerate() {
        if h[(i, i)] == 0.0 {
            *d = true;
            h[(i, i)] = 1.0;
        }
    }
    let mean_diag = (0..cols).map(|i| h[(i, i)]).sum::<f64>() / cols as f64;
    let mut damp = damp * mean_diag;
    for _ in 0..DAMP_TRIES {
        let mut hd = h.clone();
        for i in 0..cols {
            hd[(i, i)] += damp;
        }
        let Ok(llt) = hd.llt(Side::Lower) else {
            damp *= 10.0;
            continue;
        };
        let inv = llt.inverse();
        let Ok(l2) = inv.llt(Side::Lower) else {
            damp *= 10.0;
            continue;
        };
        let l2 = l2.L();
        // U = L2^T: U[i][j] = L2[j][i] for j >= i.
        let mut u = vec![0f32; cols * cols];
        for i in 0..cols {
            for j in i..cols {
                u[i * cols + j] = l2[(j, i)] as f32;
            }
        }
        return Ok(HessianInverse { u, dead });
    }
    Err(PruneError::Invalid(format!(
        "{what}: the damped Hessian is not positive definite (more calibration samples?)"
    )))
}

/// Prunes `w: [rows, cols]` in place with the inverse Hessian of its input group.
pub fn prune(w: &mut [f32], cols: usize, job: &WeightJob, hinv: &HessianInverse) -> Result<()> {
    let rows = w.len() / cols;
    let u = &hinv.u;
    for row in w.chunks_exact_mut(cols) {
        for (v, &d) in row.iter_mut().zip(&hinv.dead) {
            if d {
                *v = 0.0;
            }
        }
    }
    if let Some(p) = job.pattern {
        if !cols.is_multiple_of(p.m) {
            return Err(PruneError::Invalid(format!(
                "{}: rows of {cols} are not whole groups of {}",
                job.weight, p.m
            )));
        }
    }
    let mut w1 = Vec::new();
    let mut err1 = Vec::new();
    for i1 in (0..cols).step_by(BLOCK) {
        let i2 = (i1 + BLOCK).min(cols);
        let cnt = i2 - i1;
        // The block, [rows, cnt].
        w1.clear();
        for row in w.chunks_exact(cols) {
            w1.extend_from_slice(&row[i1..i2]);
        }
        err1.clear();
        err1.resize(rows * cnt, 0f32);
        let diag: Vec<f32> = (i1..i2).map(|j| u[j * cols + j]).collect();
        let mask = match job.pattern {
            Some(_) => vec![false; rows * cnt],
            None => {
                let scores: Vec<f32> = w1
                    .chunks_exact(cnt)
                    .flat_map(|r| r.iter().zip(&diag).map(|(v, d)| (v / d) * (v / d)))
                    .collect();
                select(&scores, cnt, Group::Tensor, job.sparsity, None)?
            }
        };
        let pattern = job.pattern;
        let run_rows = |w1r: &mut [f32], e1r: &mut [f32], m1r: &[bool]| {
            let mut mr = m1r.to_vec();
            for i in 0..cnt {
                if let Some(p) = pattern {
                    if i % p.m == 0 {
                        let s: Vec<f32> = (i..i + p.m)
                            .map(|j| (w1r[j] / diag[j]) * (w1r[j] / diag[j]))
                            .collect();
                        lowest(&s, p.n, &mut mr[i..i + p.m]);
                    }
                }
                let wv = w1r[i];
                let q = if mr[i] { 0.0 } else { wv };
                let e = (wv - q) / diag[i];
                w1r[i] = q;
                e1r[i] = e;
                let urow = &u[(i1 + i) * cols + i1..(i1 + i) * cols + i2];
                for (x, &uu) in w1r[i + 1..].iter_mut().zip(&urow[i + 1..]) {
                    *x -= e * uu;
                }
            }
        };
        par_rows(job.threads, &mut w1, &mut err1, &mask, cnt, &run_rows);
        for (row, b) in w.chunks_exact_mut(cols).zip(w1.chunks_exact(cnt)) {
            row[i1..i2].copy_from_slice(b);
        }
        spread_block_errors(w, cols, &err1, u, i1, i2, job.threads);
    }
    Ok(())
}

/// The errors of the column block `i1..i2` (`err1: [rows, i2 - i1]`) spread over the later
/// columns of `w: [rows, cols]`: `W[:, i2..] -= Err1 U[i1..i2, i2..]`, one matrix product.
pub fn spread_block_errors(
    w: &mut [f32],
    cols: usize,
    err1: &[f32],
    u: &[f32],
    i1: usize,
    i2: usize,
    threads: usize,
) {
    if i2 >= cols {
        return;
    }
    let (rows, cnt) = (w.len() / cols, i2 - i1);
    let dst = MatMut::from_row_major_slice_mut(w, rows, cols).subcols_mut(i2, cols - i2);
    let lhs = MatRef::from_row_major_slice(err1, rows, cnt);
    let rhs = MatRef::from_row_major_slice(u, cols, cols).submatrix(i1, i2, cnt, cols - i2);
    matmul(dst, Accum::Add, lhs, rhs, -1.0f32, par(threads));
}

/// One row of a block: its weights, errors and mask.
type RowFn<'a> = dyn Fn(&mut [f32], &mut [f32], &[bool]) + Sync + 'a;

/// Runs `f` on each row of the block (`w1`, `e1`, `m1` in rows of `cnt`), rows split across
/// `threads` scoped threads.
fn par_rows(
    threads: usize,
    w1: &mut [f32],
    e1: &mut [f32],
    m1: &[bool],
    cnt: usize,
    f: &RowFn<'_>,
) {
    let rows = w1.len() / cnt;
    let per = rows.div_ceil(threads.max(1)).max(1);
    std::thread::scope(|s| {
        for ((w, e), m) in w1
            .chunks_mut(per * cnt)
            .zip(e1.chunks_mut(per * cnt))
            .zip(m1.chunks(per * cnt))
        {
            s.spawn(move || {
                for ((wr, er), mr) in w
                    .chunks_exact_mut(cnt)
                    .zip(e.chunks_exact_mut(cnt))
                    .zip(m.chunks_exact(cnt))
                {
                    f(wr, er, mr);
                }
            });
        }
    });
}
