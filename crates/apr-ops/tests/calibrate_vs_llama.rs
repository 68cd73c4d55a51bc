//! Our calibration statistics against llama-imatrix's on the real 0.5B model: the same text,
//! 2 chunks of 128 tokens (the fixture is llama-imatrix's own output file, made by
//! scripts/imatrix-fixture.sh). Every weight it lists must be ours too, with the same token
//! count and per-column sums of squares within a small relative distance (the two engines'
//! activations differ by rounding only).

use apr_formats::Gguf;
use apr_ops::calibrate::{collect, CalibOptions};

/// Largest relative L2 distance allowed between the two in_sum2 vectors of one weight: the
/// engines' rounding differences grow with depth (ffn_down's input, squared products with
/// outliers, is the most sensitive: about 1e-2 in the middle layers).
const MAX_REL_L2: f64 = 0.05;
/// The same for layer 0's attention inputs, which only the embedding and one RMSNorm make:
/// there the two must agree to float rounding, which pins the statistic itself.
const MAX_REL_L2_LAYER0: f64 = 1e-5;

fn model() -> std::path::PathBuf {
    let p = apr_engine::resolve::models_dir().join("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf");
    assert!(
        p.is_file(),
        "{} missing: run scripts/fetch-models.sh 0.5b",
        p.display()
    );
    p
}

fn f32s(g: &Gguf, name: &str) -> Vec<f32> {
    let t = g
        .tensor_info(name)
        .unwrap_or_else(|| panic!("{name} not in the fixture"));
    g.tensor_data(t)
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[test]
fn sums_of_squares_match_llama_imatrix() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let reference = Gguf::open(dir.join("llama-imatrix-qwen05-c128x2.gguf")).unwrap();
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/data/calib-code.py.txt"),
    )
    .unwrap();
    let engine = apr_engine::Engine::load(&model(), 2).unwrap();
    let opts = CalibOptions {
        ctx: 128,
        max_chunks: Some(2),
        include_output: false,
    };
    let cal = collect(&engine, &text, &opts, &mut |_, _, _| {}).unwrap();
    assert_eq!(cal.chunks, 2);
    // The file we write has llama-imatrix's layout: the same tensors (names, dims, types) and
    // metadata keys, and reads back as what was written.
    let out = std::env::temp_dir().join(format!("apr-imatrix-{}.gguf", std::process::id()));
    let imx = cal.to_imatrix("calib-code.py.txt", 128);
    imx.write(&out).unwrap();
    let ours = Gguf::open(&out).unwrap();
    let layout = |g: &Gguf| {
        let mut v: Vec<_> = g
            .tensors
            .iter()
            .map(|t| (t.name.clone(), t.dims.clone(), t.dtype))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let (a, b) = (layout(&ours), layout(&reference));
    let diff: Vec<_> = a.iter().zip(&b).filter(|(x, y)| x != y).take(3).collect();
    assert!(
        a.len() == b.len() && diff.is_empty(),
        "{} vs {} tensors; first differences {diff:?}",
        a.len(),
        b.len()
    );
    let keys = |g: &Gguf| g.metadata.keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&ours), keys(&reference));
    assert_eq!(ours.get_u64("imatrix.chunk_count").unwrap(), 2);
    assert_eq!(apr_ops::Imatrix::read(&out).unwrap(), imx);
    std::fs::remove_file(&out).unwrap();
    let names: Vec<String> = reference
        .tensors
        .iter()
        .filter_map(|t| t.name.strip_suffix(".in_sum2").map(str::to_string))
        .collect();
    assert_eq!(
        names.len(),
        24 * 7,
        "llama-imatrix lists every matrix of the 24 layers"
    );
    assert_eq!(
        cal.stats.entries.len(),
        names.len(),
        "the same weights, no more"
    );
    let mut worst = (0f64, String::new());
    for n in &names {
        let theirs = f32s(&reference, &format!("{n}.in_sum2"));
        let count = f32s(&reference, &format!("{n}.counts"))[0];
        let ours = cal
            .stats
            .entries
            .get(n)
            .unwrap_or_else(|| panic!("{n} not collected"));
        assert_eq!(ours.count as f32, count, "{n}: tokens seen");
        assert_eq!(ours.sum2.len(), theirs.len(), "{n}: columns");
        let (mut d2, mut r2) = (0f64, 0f64);
        for (&a, &b) in ours.sum2.iter().zip(&theirs) {
            d2 += (a - b as f64).powi(2);
            r2 += (b as f64).powi(2);
        }
        let rel = (d2 / r2).sqrt();
        if n.starts_with("blk.0.attn_") {
            assert!(
                rel < MAX_REL_L2_LAYER0,
                "{n}: relative L2 distance {rel:.3e}"
            );
        }
        if rel > worst.0 {
            worst = (rel, n.clone());
        }
    }
    eprintln!("worst relative L2 distance {:.2e} ({})", worst.0, worst.1);
    assert!(
        worst.0 < MAX_REL_L2,
        "{}: relative L2 distance {:.3e}",
        worst.1,
        worst.0
    );
}
