//! `apr bench MODEL [--threads N] [--reps R] [--json]`.

use anyhow::Result;

use crate::common::{print_json, ModelArgs};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Repetitions after one warm-up run
    #[arg(long, default_value_t = 5)]
    pub reps: usize,
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> Result<()> {
    anyhow::ensure!(a.reps >= 1, "--reps must be at least 1");
    let engine = a.model.load()?;
    let r = apr_eval::bench::bench(&engine, a.reps, &mut |m| eprintln!("{m}"))?;
    if a.json {
        print_json(&r)
    } else {
        println!("| test     | t/s | threads | kernel |");
        println!("|----------|-----|---------|--------|");
        let rows = [
            ("pp512", r.pp512_tok_s, r.pp512_sd),
            ("tg128", r.tg128_tok_s, r.tg128_sd),
            ("tg128 x4", r.tg128_x4_tok_s, r.tg128_x4_sd),
        ];
        for (test, m, sd) in rows {
            println!(
                "| {test:<8} | {m:.2} ± {sd:.2} | {} | {} |",
                r.threads, r.kernel
            );
        }
        println!(
            "read bandwidth {:.2} GB/s ({} threads); decode reads {:.1} MB/token, \
             tg128 at {:.0}% of that floor",
            r.read_gbs,
            r.threads,
            r.decode_weight_bytes as f64 / 1e6,
            r.decode_bw_frac * 100.0
        );
        Ok(())
    }
}
