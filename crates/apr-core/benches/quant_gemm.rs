//! Prefill matmul throughput: the panel GEMM against the per-row `vec_dot_multi` path (four
//! activation rows per weight-row unpack), same data, same run. One thread.
//! Run: cargo bench -p apr-core --bench quant_gemm [-- TOKENS]

use apr_core::quant::{gemm, quantize_activation, vec_dot_multi, vec_dot_type, GgmlType};
use std::time::Instant;

/// (type, weight rows, row length): the shapes of the Qwen2.5 0.5B / 1.5B prefill matmuls.
const SHAPES: [(GgmlType, usize, usize); 5] = [
    (GgmlType::Q5_0, 4864, 896),
    (GgmlType::Q8_0, 896, 896),
    (GgmlType::Q6K, 896, 4864),
    (GgmlType::Q4K, 896, 4864),
    (GgmlType::Q4K, 1536, 1536),
];

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(128);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    println!("{n} tokens, 1 thread");
    for (ty, m, k) in SHAPES {
        let rb = ty.bytes_for(k).unwrap();
        let mut w: Vec<u8> = (0..rb * m).map(|_| rnd() as u8).collect();
        // Tame every f16 scale so sums stay finite.
        let d = half::f16::from_f32(0.01).to_le_bytes();
        let offs: &[usize] = match ty {
            GgmlType::Q6K => &[208],
            GgmlType::Q4K => &[0, 2],
            _ => &[0],
        };
        for b in w.chunks_exact_mut(ty.block_bytes()) {
            for &o in offs {
                b[o..o + 2].copy_from_slice(&d);
            }
        }
        let at = vec_dot_type(ty);
        let xb = at.bytes_for(k).unwrap();
        let mut x = vec![0u8; n * xb];
        for row in x.chunks_exact_mut(xb) {
            let xf: Vec<f32> = (0..k)
                .map(|_| (rnd() % 2000) as f32 / 1000.0 - 1.0)
                .collect();
            quantize_activation(at, &xf, row).unwrap();
        }
        let flops = 2.0 * (m * k * n) as f64;
        let mut out = vec![0f32; n * m];
        let mut best = [f64::MAX; 2];
        for _ in 0..3 {
            let t = Instant::now();
            let xs: Vec<&[u8]> = x.chunks_exact(xb).collect();
            let mut tile = [0f32; 4];
            for (r, wr) in w.chunks_exact(rb).enumerate() {
                for (c, g) in xs.chunks(4).enumerate() {
                    vec_dot_multi(ty, k, wr, g, &mut tile[..g.len()]);
                    for (j, v) in tile[..g.len()].iter().enumerate() {
                        out[(4 * c + j) * m + r] = *v;
                    }
                }
            }
            best[0] = best[0].min(t.elapsed().as_secs_f64());
            let t = Instant::now();
            gemm(ty, k, &w, m, &x, n, &mut out, m).unwrap();
            best[1] = best[1].min(t.elapsed().as_secs_f64());
        }
        println!(
            "{:5} {m:5}x{k:<5} multi {:6.1} GFLOP/s  gemm {:6.1} GFLOP/s  (x{:.2})  [{}]",
            ty.name(),
            flops / best[0] / 1e9,
            flops / best[1] / 1e9,
            best[0] / best[1],
            out[0].is_finite()
        );
    }
}
