//! `apr check MODEL [--json]`: integrity of a model file; exits 1 when anything is wrong.

use anyhow::{bail, Result};
use apr_ops::check::{check_file, Severity};

use crate::common::print_json;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// GGUF file or cached model name
    pub model: String,
    /// Threads for the value scan (default: all cores)
    #[arg(short, long)]
    pub threads: Option<usize>,
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> Result<()> {
    let path = apr_engine::resolve_model(&a.model)?;
    let threads = a
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let report = check_file(&path, threads.max(1));
    let (errors, warnings) = report
        .findings
        .iter()
        .fold((0, 0), |(e, w), f| match f.severity {
            Severity::Error => (e + 1, w),
            Severity::Warning => (e, w + 1),
        });
    if a.json {
        print_json(&serde_json::json!({
            "file": path.display().to_string(),
            "ok": report.ok(),
            "errors": errors,
            "warnings": warnings,
            "checks": report.checks,
            "tensors": report.tensors,
            "values_scanned": report.values_scanned,
            "findings": report.findings,
        }))?;
    } else {
        for f in &report.findings {
            let s = match f.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            println!("{s} [{}] {}", f.check, f.message);
        }
        println!(
            "{}: {} tensors, {} values scanned; checks {}: {errors} error(s), {warnings} warning(s)",
            path.display(),
            report.tensors,
            report.values_scanned,
            report.checks.join(", "),
        );
    }
    if !report.ok() {
        bail!("{} failed {errors} check(s)", path.display());
    }
    Ok(())
}
