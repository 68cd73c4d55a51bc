//! `apr quantize IN OUT --type T [--imatrix FILE [--weighting ggml|energy] [--energy-power P]]
//! [--gptq [--calib FILE] [--calib-samples N] [--calib-len L]] [--allocate position|error]
//! [--threads N] [--json]`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use apr_ops::gptq::GptqOptions;
use apr_ops::{quantize_file, Allocation, FileType, Imatrix, QuantizeOptions, Weighting};

use crate::common::print_json;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Input GGUF (any type: quantized tensors are dequantized, then quantized again), or a cached model name
    pub input: String,
    /// Output GGUF (written to a temporary file, then renamed into place)
    pub output: PathBuf,
    /// File type: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K_S, Q3_K_M, Q3_K_L, Q4_K_S, Q4_K_M, Q5_K_S, Q5_K_M, Q6_K (case-insensitive)
    #[arg(long = "type")]
    pub ftype: String,
    /// Importance matrix (llama-imatrix's GGUF or legacy .dat format)
    #[arg(long)]
    pub imatrix: Option<PathBuf>,
    /// How the imatrix steers the K-quant searches: ggml (llama-quantize's bytes) or energy
    /// (Q6_K weighted by magnitude too, then each row's scales rescaled against the shrink of
    /// the weighted fit; lower perplexity on Q2_K and Q3_K_M, see docs/quantization.md)
    #[arg(long, value_enum, default_value = "ggml", requires = "imatrix")]
    pub weighting: WeightingArg,
    /// The energy weighting's power p, in (0, 8]: scales times (sum a x^2 / sum a q^2)^(p/2)
    /// (default 3)
    #[arg(long, allow_negative_numbers = true)]
    pub energy_power: Option<f32>,
    /// Quantize the decoder matrices by GPTQ: each matrix's levels chosen column by column
    /// against the inverse Hessian of its calibration inputs, layer by layer (same types and
    /// blocks as without; resumes after an interruption)
    #[arg(long)]
    pub gptq: bool,
    /// Calibration text for --gptq (default: ../shared/data/calib-code.py.txt; never the
    /// evaluation text)
    #[arg(long, requires = "gptq")]
    pub calib: Option<PathBuf>,
    /// Calibration samples for --gptq
    #[arg(long, default_value_t = apr_ops::prune::DEFAULT_CALIB_SAMPLES)]
    pub calib_samples: usize,
    /// Tokens per calibration sample for --gptq
    #[arg(long, default_value_t = apr_ops::prune::DEFAULT_CALIB_LEN)]
    pub calib_len: usize,
    /// The Hessian's damping for --gptq, a fraction of its mean diagonal (default 0.01, the
    /// paper's), in (0, 10]
    #[arg(long, requires = "gptq")]
    pub gptq_damp: Option<f64>,
    /// Which layers of a tensor kind get the mix's larger type: position (llama.cpp's layers,
    /// llama-quantize's types) or error (the layers where it lowers the imatrix-weighted
    /// error the most; the same count of each type, so the same size)
    #[arg(long, value_enum, default_value = "position")]
    pub allocate: AllocateArg,
    /// Threads (default: all cores)
    #[arg(long, short = 't')]
    pub threads: Option<usize>,
    /// Print {"out", "type", "bytes", "tensors", "fallbacks", "allocation", "seconds"} on stdout
    #[arg(long)]
    pub json: bool,
}

/// The energy weighting's default power (docs/quantization.md has the measurements).
pub const DEFAULT_ENERGY_POWER: f32 = 3.0;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocateArg {
    Position,
    Error,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightingArg {
    Ggml,
    Energy,
}

/// The weighting the flags ask for; a power without the energy weighting is an error.
fn weighting(a: &Args) -> Result<Weighting> {
    match (a.weighting, a.energy_power) {
        (WeightingArg::Ggml, Some(_)) => anyhow::bail!("--energy-power needs --weighting energy"),
        (WeightingArg::Ggml, None) => Ok(Weighting::Ggml),
        (WeightingArg::Energy, p) => Weighting::Energy {
            p: p.unwrap_or(DEFAULT_ENERGY_POWER),
        }
        .check()
        .map_err(anyhow::Error::msg),
    }
}

pub fn run(a: Args) -> Result<()> {
    let t0 = std::time::Instant::now();
    let ftype = FileType::from_name(&a.ftype).ok_or_else(|| {
        anyhow::anyhow!(
            "unknown quantization type {:?} (known: {})",
            a.ftype,
            FileType::names().join(", ")
        )
    })?;
    let weighting = weighting(&a)?;
    if a.gptq && weighting != Weighting::Ggml {
        anyhow::bail!("--gptq chooses the levels itself: it takes --weighting ggml only");
    }
    let gptq = if a.gptq {
        let calib = crate::common::read_calib(a.calib.as_deref())?;
        let damp = a.gptq_damp.unwrap_or(apr_ops::gptq::DEFAULT_DAMP);
        if !(damp > 0.0 && damp <= 10.0) {
            anyhow::bail!("--gptq-damp must be in (0, 10], got {damp}");
        }
        Some(GptqOptions {
            calib,
            samples: a.calib_samples,
            len: a.calib_len,
            damp,
        })
    } else {
        None
    };
    let input = apr_engine::resolve_model(&a.input)?;
    let imatrix = match &a.imatrix {
        Some(p) => Some((
            Imatrix::read(p).with_context(|| format!("cannot use the imatrix {}", p.display()))?,
            p.clone(),
        )),
        None => None,
    };
    let threads = a.threads.filter(|&t| t > 0).unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let command = std::iter::once("apr".to_string())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ");
    let opts = QuantizeOptions {
        ftype,
        imatrix,
        weighting,
        threads,
        command,
        gptq,
        allocation: match a.allocate {
            AllocateArg::Position => Allocation::Position,
            AllocateArg::Error => Allocation::Error,
        },
    };
    let report = quantize_file(&input, &a.output, &opts, &mut |t| {
        eprintln!(
            "[{:>4}/{:>4}] {:<36} {:>5} -> {:<5} {:>10} bytes{}",
            t.index,
            t.total,
            t.name,
            t.from.name(),
            t.to.name(),
            t.bytes,
            if t.used_imatrix { " (imatrix)" } else { "" }
        );
    })
    .with_context(|| format!("cannot quantize {} to {}", input.display(), ftype.name))?;
    let seconds = t0.elapsed().as_secs_f64();
    if report.n_fallback > 0 {
        eprintln!(
            "{} tensor(s) took a fallback type (rows not a whole number of blocks)",
            report.n_fallback
        );
    }
    if a.json {
        print_json(&serde_json::json!({
            "out": report.out,
            "type": report.ftype,
            "bytes": report.bytes,
            "tensors": report.tensors,
            "fallbacks": report.n_fallback,
            "allocation": report.allocation,
            "seconds": seconds,
        }))
    } else {
        println!(
            "wrote {} ({}, {} bytes, {:.1}s)",
            report.out.display(),
            report.ftype,
            report.bytes,
            seconds
        );
        Ok(())
    }
}
