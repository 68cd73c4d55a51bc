//! Throughput of the dot kernels on a decode-shaped matrix-vector product (one activation row)
//! and the prefill form (four rows per weight-block unpack). Plain timing loop, no criterion.
//! Run: cargo bench -p apr-core --bench quant_dot [-- ROWS]

use apr_core::quant::{
    force_kernel, gemv, kernel_name, quantize_activation, vec_dot, vec_dot_multi, vec_dot_type,
    GgmlType, PackedMatrix,
};
use std::time::Instant;

/// Row length (Qwen2.5-1.5B hidden size).
const K: usize = 1536;
/// Types the target models use.
const TYPES: [GgmlType; 7] = [
    GgmlType::Q4K,
    GgmlType::Q6K,
    GgmlType::Q5_0,
    GgmlType::Q8_0,
    GgmlType::Q4_0,
    GgmlType::F16,
    GgmlType::F32,
];

fn main() {
    let rows: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(8192);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    if let Ok(k) = std::env::var("APR_KERNEL") {
        force_kernel(&k).expect("APR_KERNEL names a kernel family this CPU has");
    }
    println!("kernel {}, {rows} rows x {K}", kernel_name());
    for ty in TYPES {
        let rb = ty.bytes_for(K).unwrap();
        // Random bits with every scale / float exponent tamed, so the sums stay finite.
        let mut w: Vec<u8> = (0..rb * rows).map(|_| rnd() as u8).collect();
        match ty {
            GgmlType::F32 => w.chunks_exact_mut(4).for_each(|c| c[3] = 0x3f),
            GgmlType::F16 => w.chunks_exact_mut(2).for_each(|c| c[1] = 0x38),
            _ => {
                let d = half::f16::from_f32(0.01).to_le_bytes();
                let off = match ty {
                    GgmlType::Q6K => 208,
                    _ => 0,
                };
                for b in w.chunks_exact_mut(ty.block_bytes()) {
                    b[off..off + 2].copy_from_slice(&d);
                    if ty == GgmlType::Q4K {
                        b[2..4].copy_from_slice(&d);
                    }
                }
            }
        }
        let at = vec_dot_type(ty);
        let acts: Vec<Vec<u8>> = (0..4)
            .map(|_| {
                let x: Vec<f32> = (0..K)
                    .map(|_| (rnd() % 2000) as f32 / 1000.0 - 1.0)
                    .collect();
                let mut q = vec![0u8; at.bytes_for(K).unwrap()];
                quantize_activation(at, &x, &mut q).unwrap();
                q
            })
            .collect();
        let xs: Vec<&[u8]> = acts.iter().map(|a| a.as_slice()).collect();
        let iters = (400_000_000 / w.len()).max(3);
        let mut sink = 0f32;
        let t = Instant::now();
        for _ in 0..iters {
            for r in w.chunks_exact(rb) {
                sink += vec_dot(ty, K, r, xs[0]);
            }
        }
        let t1 = t.elapsed().as_secs_f64() / iters as f64;
        let mut rows_out = vec![0f32; rows];
        let t = Instant::now();
        for _ in 0..iters {
            gemv(ty, K, &w, xs[0], &mut rows_out).unwrap();
            sink += rows_out[0];
        }
        let tg = t.elapsed().as_secs_f64() / iters as f64;
        let mut packed_gbs = 0.0;
        if let Some(p) = PackedMatrix::pack(ty, rows, K, &w).unwrap() {
            let t = Instant::now();
            for _ in 0..iters {
                p.gemm(0..p.panels(), xs[0], 1, &mut rows_out, rows)
                    .unwrap();
                sink += rows_out[0];
            }
            packed_gbs = p.bytes() as f64 / (t.elapsed().as_secs_f64() / iters as f64) / 1e9;
        }
        let mut out = [0f32; 4];
        let t = Instant::now();
        for _ in 0..iters {
            for r in w.chunks_exact(rb) {
                vec_dot_multi(ty, K, r, &xs, &mut out);
                sink += out[0];
            }
        }
        let t4 = t.elapsed().as_secs_f64() / iters as f64;
        println!(
            "{:5} {:6.1} MB  1 col: {:6.2} GB/s {:6.2} Gelem/s  gemv {:6.2} GB/s  packed {:6.2} GB/s  4 col: {:6.2} Gelem/s (x{:.2})  [{}]",
            ty.name(),
            w.len() as f64 / 1e6,
            w.len() as f64 / t1 / 1e9,
            (rows * K) as f64 / t1 / 1e9,
            w.len() as f64 / tg / 1e9,
            packed_gbs,
            (4 * rows * K) as f64 / t4 / 1e9,
            4.0 * t1 / t4,
            sink.is_finite()
        );
    }
}
