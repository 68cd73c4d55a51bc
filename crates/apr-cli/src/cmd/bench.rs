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
        println!("| test  | t/s | threads | kernel |");
        println!(
            "| pp512 | {:.2} ± {:.2} | {} | {} |",
            r.pp512_tok_s, r.pp512_sd, r.threads, r.kernel
        );
        println!(
            "| tg128 | {:.2} ± {:.2} | {} | {} |",
            r.tg128_tok_s, r.tg128_sd, r.threads, r.kernel
        );
        Ok(())
    }
}
