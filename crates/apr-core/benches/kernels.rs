//! criterion micro-benchmarks of the product kernels, one thread, data in cache (the kernels'
//! own speed, not the memory's):
//! - `gemv/<layout>/<type>`: decode, one activation row against 4096 x 1536 weights; the
//!   throughput is the weight bytes read, so criterion's figure is GB/s;
//! - `gemm/<layout>/<type>/<shape>`: prefill, 128 activation rows against the shapes of the
//!   Qwen2.5 0.5B / 1.5B matmuls; the throughput counts 2·m·n·k operations as "elements", so
//!   criterion's elem/s figure is FLOP/s (integer multiply-adds, as llama.cpp counts them).
//!
//! Layouts: `ggml` (the file's row layout: `gemv` / the panel `gemm`) and `packed` (repacked
//! at load, [`PackedMatrix`]). `APR_KERNEL=avx2|scalar` measures another kernel family.
//! Run: cargo bench -p apr-core --bench kernels [-- FILTER]

use apr_core::quant::{
    force_kernel, gemm, gemv, kernel_name, quantize_activation, vec_dot_type, GgmlType,
    PackedMatrix,
};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;

/// Decode shape: rows x cols.
const GEMV_SHAPE: (usize, usize) = (4096, 1536);
/// Prefill tokens.
const GEMM_TOKENS: usize = 128;
/// (type, weight rows, row length): the prefill matmuls of Qwen2.5 0.5B / 1.5B.
const GEMM_SHAPES: [(GgmlType, usize, usize); 8] = [
    (GgmlType::Q5_0, 4864, 896),
    (GgmlType::Q8_0, 896, 896),
    (GgmlType::Q6K, 896, 4864),
    (GgmlType::Q4K, 896, 4864),
    (GgmlType::Q4K, 1536, 1536),
    (GgmlType::Q6K, 1536, 8960),
    (GgmlType::F16, 1536, 1536),
    (GgmlType::BF16, 1536, 1536),
];
const GEMV_TYPES: [GgmlType; 8] = [
    GgmlType::Q4K,
    GgmlType::Q6K,
    GgmlType::Q5_0,
    GgmlType::Q8_0,
    GgmlType::Q4_0,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::F32,
];

/// xorshift64: deterministic bench data.
struct Rnd(u64);
impl Rnd {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Random weights of `ty` with every scale and float tamed, so the sums stay finite.
fn weights(ty: GgmlType, rows: usize, cols: usize, rnd: &mut Rnd) -> Vec<u8> {
    let rb = ty.bytes_for(cols).unwrap();
    let mut w: Vec<u8> = (0..rb * rows).map(|_| rnd.next() as u8).collect();
    match ty {
        GgmlType::F32 => w.chunks_exact_mut(4).for_each(|c| c[3] = 0x3f),
        GgmlType::F16 => w.chunks_exact_mut(2).for_each(|c| c[1] = 0x38),
        GgmlType::BF16 => w.chunks_exact_mut(2).for_each(|c| c[1] = 0x3f),
        _ => {
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
        }
    }
    w
}

/// `n` random activation rows quantized for weights of `ty`.
fn activations(ty: GgmlType, n: usize, cols: usize, rnd: &mut Rnd) -> Vec<u8> {
    let at = vec_dot_type(ty);
    let xb = at.bytes_for(cols).unwrap();
    let mut x = vec![0u8; n * xb];
    for row in x.chunks_exact_mut(xb) {
        let xf: Vec<f32> = (0..cols)
            .map(|_| (rnd.next() % 2000) as f32 / 1000.0 - 1.0)
            .collect();
        quantize_activation(at, &xf, row).unwrap();
    }
    x
}

fn bench_gemv(c: &mut Criterion) {
    if let Ok(k) = std::env::var("APR_KERNEL") {
        force_kernel(&k).expect("APR_KERNEL names a kernel family this CPU has");
    }
    eprintln!("kernel family: {}", kernel_name());
    let mut rnd = Rnd(0x2545_f491_4f6c_dd1d);
    let (rows, cols) = GEMV_SHAPE;
    let mut g = c.benchmark_group("gemv");
    for ty in GEMV_TYPES {
        let w = weights(ty, rows, cols, &mut rnd);
        let x = activations(ty, 1, cols, &mut rnd);
        let mut out = vec![0f32; rows];
        g.throughput(Throughput::Bytes(w.len() as u64));
        g.bench_function(BenchmarkId::new("ggml", ty.name()), |b| {
            b.iter(|| gemv(ty, cols, black_box(&w), black_box(&x), &mut out).unwrap())
        });
        if let Some(p) = PackedMatrix::pack(ty, rows, cols, &w).unwrap() {
            g.throughput(Throughput::Bytes(p.bytes() as u64));
            g.bench_function(BenchmarkId::new("packed", ty.name()), |b| {
                b.iter(|| {
                    p.gemm(0..p.panels(), black_box(&x), 1, &mut out, rows)
                        .unwrap()
                })
            });
        }
    }
    g.finish();
}

fn bench_gemm(c: &mut Criterion) {
    let mut rnd = Rnd(0x9e37_79b9_7f4a_7c15);
    let n = GEMM_TOKENS;
    let mut g = c.benchmark_group("gemm");
    for (ty, m, k) in GEMM_SHAPES {
        let w = weights(ty, m, k, &mut rnd);
        let x = activations(ty, n, k, &mut rnd);
        let mut out = vec![0f32; n * m];
        let shape = format!("{}/{m}x{k}", ty.name());
        g.throughput(Throughput::Elements(2 * (m * n * k) as u64));
        g.bench_function(BenchmarkId::new("ggml", &shape), |b| {
            b.iter(|| gemm(ty, k, black_box(&w), m, black_box(&x), n, &mut out, m).unwrap())
        });
        if let Some(p) = PackedMatrix::pack(ty, m, k, &w).unwrap() {
            g.bench_function(BenchmarkId::new("packed", &shape), |b| {
                b.iter(|| {
                    p.gemm(0..p.panels(), black_box(&x), n, &mut out, m)
                        .unwrap()
                })
            });
        }
    }
    g.finish();
}

criterion_group! {
    name = kernels;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    targets = bench_gemv, bench_gemm
}
criterion_main!(kernels);
