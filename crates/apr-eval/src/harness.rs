//! The evaluation loop: generate answers with the engine (or read them from a samples file),
//! turn them into programs, score them in the sandbox with parallel workers while generation
//! goes on, append every scored sample to the results folder, and summarize pass@k.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Instant;

use apr_engine::generate::{Engine, GenOptions};
use apr_engine::sampling::SamplerConfig;
use apr_formats::chat_template::Message;
use serde_json::json;

use crate::datasets::{self, Benchmark, Dataset, Subset, Task};
use crate::extract;
use crate::judge::{Judge, JudgeOptions, PlusVerdict, Status, Verdict};
use crate::prompts::{self, Ctx, Frame, Strategy};
use crate::results::{self, Rerank, SampleRecord, Store};
use crate::sandbox::{Sandbox, SandboxConfig};
use crate::visible::{self, Visible};

/// Set from a signal handler: stop generating, finish what is in flight, summarize.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

#[derive(thiserror::Error, Debug)]
pub enum HarnessError {
    #[error(transparent)]
    Dataset(#[from] datasets::DatasetError),
    #[error(transparent)]
    Prompt(#[from] prompts::PromptError),
    #[error(transparent)]
    Results(#[from] results::ResultsError),
    #[error(transparent)]
    Sandbox(#[from] crate::sandbox::SandboxError),
    #[error(transparent)]
    Judge(#[from] crate::judge::JudgeError),
    #[error(transparent)]
    Engine(#[from] apr_engine::EngineError),
    #[error("{path}: {msg}")]
    Samples { path: PathBuf, msg: String },
    #[error("{0}")]
    Config(String),
}

type Result<T> = std::result::Result<T, HarnessError>;

/// Everything `apr eval humaneval|...` takes.
#[derive(Debug, Clone)]
pub struct EvalConfig {
    pub bench: Benchmark,
    pub subset: Option<Subset>,
    pub data: Option<PathBuf>,
    pub n_samples: usize,
    pub temperature: f32,
    pub top_p: f32,
    pub seed: u64,
    pub strategy: String,
    pub rerank: Option<Rerank>,
    pub timeout_s: f64,
    pub workers: usize,
    pub limit: Option<usize>,
    pub out: PathBuf,
    /// Overrides the strategy's answer length.
    pub max_tokens: Option<usize>,
    /// KV cache size of the generation session.
    pub ctx: usize,
}

/// Progress as samples are scored.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub scored: usize,
    pub total: usize,
    pub passed: usize,
    pub gen_tokens: usize,
    pub gen_secs: f64,
}

/// What the model side adds to a run: the engine and the model file's identity.
pub struct ModelSide<'a> {
    pub engine: &'a Engine,
    pub path: &'a Path,
    pub sha256: String,
}

/// An answer waiting for the judge.
struct Pending {
    rec: SampleRecord,
    task: usize,
}

/// Runs an evaluation (generating with `model`, or scoring `samples` made elsewhere) into
/// `cfg.out`, resuming what is there, and returns the summary object.
pub fn evaluate(
    cfg: &EvalConfig,
    model: Option<ModelSide>,
    samples: Option<&Path>,
    on_progress: &(dyn Fn(Progress) + Sync),
    on_status: &(dyn Fn(&str) + Sync),
) -> Result<serde_json::Value> {
    let t0 = Instant::now();
    let ds = datasets::load(cfg.bench, cfg.subset, cfg.data.as_deref())?;
    let mut tasks: Vec<&Task> = ds.tasks.iter().collect();
    if let Some(l) = cfg.limit {
        tasks.truncate(l);
    }
    let strategy = prompts::strategy(&cfg.strategy)?;
    // Answers given by a samples file (in file order per task), or generated.
    let given = match samples {
        Some(p) => Some(read_samples(p, &ds)?),
        None => None,
    };
    if given.is_none() && model.is_none() {
        return Err(HarnessError::Config(
            "a model or --samples is needed".into(),
        ));
    }
    let settings = settings(cfg, &ds, model.as_ref(), samples);
    let mut store = Store::open(&cfg.out, &settings, &["workers", "limit"])?;
    let done = store.done();

    let sandbox = Sandbox::new(SandboxConfig {
        timeout: std::time::Duration::from_secs_f64(cfg.timeout_s),
        workers: cfg.workers,
        ..SandboxConfig::default()
    })?;
    let mut judge = Judge::new(
        &ds,
        &sandbox,
        JudgeOptions {
            timeout: std::time::Duration::from_secs_f64(cfg.timeout_s),
            ..JudgeOptions::default()
        },
    );
    judge.prepare(&|msg: &str| on_status(msg))?;

    // The work list: (task index, sample index, given answer).
    let mut work: Vec<(usize, usize, Option<String>)> = Vec::new();
    for (ti, t) in tasks.iter().enumerate() {
        match &given {
            Some(g) => {
                for (si, sol) in g.get(&t.task_id).into_iter().flatten().enumerate() {
                    work.push((ti, si, Some(sol.clone())));
                }
            }
            None => (0..cfg.n_samples).for_each(|si| work.push((ti, si, None))),
        }
    }
    let total = work.len();
    work.retain(|(ti, si, _)| !done.contains(&(tasks[*ti].task_id.clone(), *si)));
    let exemplars = if strategy.name == "few-shot" {
        datasets::load(Benchmark::Mbpp, Some(Subset::Full), None)?.tasks
    } else {
        Vec::new()
    };

    let (job_tx, job_rx) = mpsc::channel::<Pending>();
    let job_rx = Arc::new(Mutex::new(job_rx));
    let (res_tx, res_rx) = mpsc::channel::<SampleRecord>();
    let gen_stats = Mutex::new((0usize, 0f64));
    let mut write_err: Option<results::ResultsError> = None;
    std::thread::scope(|s| {
        // Judges.
        for _ in 0..cfg.workers.max(1) {
            let rx = Arc::clone(&job_rx);
            let tx = res_tx.clone();
            let (judge, tasks) = (&judge, &tasks);
            s.spawn(move || loop {
                let job = { rx.lock().map(|r| r.recv()) };
                let Ok(Ok(mut p)) = job else { break };
                let t = Instant::now();
                let v = judge.check(tasks[p.task], &p.rec.program);
                p.rec.exec_s = t.elapsed().as_secs_f64();
                fill_verdict(&mut p.rec, v);
                if tx.send(p.rec).is_err() {
                    break;
                }
            });
        }
        drop(res_tx);
        // Writer: appends each scored sample as it comes.
        let writer = s.spawn(|| {
            let mut passed = store.records.iter().filter(|r| r.passed()).count();
            let first = store.records.len() + 1;
            for (scored, r) in (first..).zip(res_rx) {
                passed += r.passed() as usize;
                store.append(r)?;
                let (gen_tokens, gen_secs) = *gen_stats.lock().unwrap_or_else(|e| e.into_inner());
                on_progress(Progress {
                    scored,
                    total,
                    passed,
                    gen_tokens,
                    gen_secs,
                });
            }
            Ok(())
        });
        // Producer: this thread generates (or reads) answers.
        let mut session = model.as_ref().map(|m| m.engine.session(cfg.ctx));
        for (ti, si, answer) in work {
            if INTERRUPTED.load(Ordering::Relaxed) {
                break;
            }
            let task = tasks[ti];
            let rec = match (answer, session.as_mut()) {
                (Some(sol), _) => given_record(task, si, sol),
                (None, Some(sess)) => {
                    let ctx = Ctx {
                        bench: cfg.bench,
                        task,
                        exemplars: &exemplars,
                    };
                    match generate_one(cfg, strategy, &ctx, si, sess, &sandbox) {
                        Ok(r) => {
                            let mut g = gen_stats.lock().unwrap_or_else(|e| e.into_inner());
                            g.0 += r.completion_tokens;
                            g.1 += r.gen_s;
                            r
                        }
                        Err(e) => failed_record(task, si, &e.to_string()),
                    }
                }
                (None, None) => unreachable!("checked above: a model or a samples file"),
            };
            if job_tx.send(Pending { rec, task: ti }).is_err() {
                break;
            }
        }
        drop(job_tx);
        if let Ok(Err(e)) = writer.join() {
            write_err = Some(e);
        }
    });
    if let Some(e) = write_err {
        return Err(e.into());
    }
    let summary = summarize(
        cfg,
        &ds,
        &tasks,
        &store.records,
        &settings,
        &sandbox,
        &judge,
        total,
        t0,
    );
    store.write_text(
        "summary.json",
        &serde_json::to_string_pretty(&summary).unwrap_or_default(),
    )?;
    store.write_text("report.md", &report(&summary, &tasks, &store.records))?;
    Ok(summary)
}

/// A per-sample seed that does not depend on which samples a resumed run still needs.
fn sample_seed(base: u64, task_id: &str, sample: usize) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in task_id.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    base ^ h ^ (sample as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// The program an answer makes for `task`.
fn program_for(bench: Benchmark, task: &Task, answer: &str, fence_open: bool) -> String {
    let code = extract::code_from_answer(answer, fence_open, &task.entry_point);
    if bench.is_humaneval_family() {
        extract::humaneval_program(&task.prompt, &code, &task.entry_point)
    } else {
        extract::tabs_to_spaces(&code)
    }
}

fn generate_one(
    cfg: &EvalConfig,
    strategy: &Strategy,
    ctx: &Ctx,
    sample: usize,
    sess: &mut apr_engine::generate::Session,
    sandbox: &Sandbox,
) -> Result<SampleRecord> {
    let engine = sess.engine;
    let p = (strategy.prompt)(ctx)?;
    let (mut messages, prefill, raw) = match &p.frame {
        Frame::Chat { messages, prefill } => (messages.clone(), prefill.clone(), None),
        Frame::Raw(t) => (Vec::new(), String::new(), Some(t.clone())),
    };
    let render = |messages: &[(String, String)], prefill: &str| -> Result<String> {
        let msgs: Vec<Message> = messages.iter().map(|(r, c)| Message::new(r, c)).collect();
        Ok(engine.chat_prompt(&msgs)? + prefill)
    };
    let want_visible = strategy.feedback.is_some() || cfg.rerank == Some(Rerank::SelfTest);
    let opts = |max: usize| GenOptions {
        max_tokens: cfg.max_tokens.unwrap_or(max),
        sampler: SamplerConfig {
            temperature: cfg.temperature,
            top_k: 0,
            top_p: cfg.top_p,
            min_p: 0.0,
            repeat_penalty: 1.0,
            seed: sample_seed(cfg.seed, &ctx.task.task_id, sample),
        },
        stop: p.stop.clone(),
        logprobs: 1,
    };
    let first_text = match &raw {
        Some(t) => t.clone(),
        None => render(&messages, &prefill)?,
    };
    let mut text = first_text.clone();
    let mut fence_open = p.fence_open;
    let mut max = p.max_tokens;
    let (mut gen_s, mut ctoks) = (0.0, 0);
    let mut rounds = 0;
    loop {
        let ids = engine
            .tokenizer
            .encode(&text)
            .map_err(apr_engine::EngineError::from)?;
        let out = sess.generate(&ids, &opts(max), &mut |_| {})?;
        gen_s += out.prefill_secs + out.decode_secs;
        let ptoks = ids.len();
        ctoks += out.tokens.len();
        let lps = &out.token_logprobs;
        let answer = out.text.clone();
        let program = program_for(ctx.bench, ctx.task, &answer, fence_open);
        let vis = if want_visible {
            Some(visible::run(sandbox, ctx.bench, ctx.task, &program))
        } else {
            None
        };
        let fail = match (&vis, strategy.feedback) {
            (Some(Visible::Fail(msg)), Some(fb))
                if rounds < strategy.max_rounds && raw.is_none() =>
            {
                Some(fb(msg))
            }
            _ => None,
        };
        let Some(next) = fail else {
            let logprob = (!lps.is_empty())
                .then(|| lps.iter().map(|&l| l as f64).sum::<f64>() / lps.len() as f64);
            return Ok(SampleRecord {
                task_id: ctx.task.task_id.clone(),
                sample,
                prompt: first_text,
                completion: answer,
                program,
                status: String::new(),
                base_status: None,
                plus_status: None,
                error_kind: None,
                message: String::new(),
                gen_s,
                exec_s: 0.0,
                prompt_tokens: ptoks,
                completion_tokens: ctoks,
                stop: Some(out.stop.as_str().to_string()),
                logprob,
                visible_pass: vis.and_then(|v| match v {
                    Visible::Pass => Some(true),
                    Visible::Fail(_) => Some(false),
                    Visible::NoExamples => None,
                }),
                rounds,
            });
        };
        // Reflexion: the answer so far as the assistant's turn, then the feedback.
        let shown = if fence_open {
            format!("{prefill}{answer}```")
        } else {
            answer
        };
        messages.push(("assistant".to_string(), shown));
        messages.push(("user".to_string(), next));
        text = render(&messages, "")?;
        fence_open = false;
        max = prompts::MAX_TOKENS_REASONING;
        rounds += 1;
    }
}

fn blank_record(task: &Task, sample: usize) -> SampleRecord {
    SampleRecord::blank(&task.task_id, sample)
}

/// A sample from a samples file: `solution` is the whole program already.
fn given_record(task: &Task, sample: usize, solution: String) -> SampleRecord {
    let mut r = blank_record(task, sample);
    r.program = solution.clone();
    r.completion = solution;
    r
}

/// A sample whose generation failed (e.g. the prompt does not fit the context): scored as a
/// failure with the reason.
fn failed_record(task: &Task, sample: usize, why: &str) -> SampleRecord {
    let mut r = blank_record(task, sample);
    r.message = format!("generation failed: {why}");
    r
}

fn status_str(s: Status) -> &'static str {
    match s {
        Status::Pass => "pass",
        Status::Fail => "fail",
        Status::Timeout => "timeout",
    }
}

fn fill_verdict(
    r: &mut SampleRecord,
    v: std::result::Result<PlusVerdict, crate::judge::JudgeError>,
) {
    if r.message.starts_with("generation failed") {
        r.status = "fail".into();
        r.error_kind = Some("generation".into());
        return;
    }
    match v {
        Err(e) => {
            r.status = "fail".into();
            r.error_kind = Some("harness".into());
            r.message = e.to_string();
        }
        Ok(pv) => {
            let base = &pv.base;
            r.base_status = Some(status_str(base.status).into());
            r.plus_status = pv.plus.as_ref().map(|p| status_str(p.status).into());
            // Counted: base, and plus too where there is one (EvalPlus's plus figure).
            let decisive: &Verdict = match &pv.plus {
                Some(p) if base.status == Status::Pass => p,
                _ => base,
            };
            r.status = status_str(decisive.status).into();
            r.error_kind = decisive.error_kind.clone();
            r.message = decisive.message.clone();
        }
    }
}

/// EvalPlus samples format: `task_id` plus `solution` (a whole program) or `completion`
/// (appended to the task's prompt); apr's samples.jsonl (`program`) too. Task id → solutions
/// in file order.
fn read_samples(
    path: &Path,
    ds: &Dataset,
) -> Result<std::collections::HashMap<String, Vec<String>>> {
    let err = |msg: String| HarnessError::Samples {
        path: path.to_path_buf(),
        msg,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let mut out: std::collections::HashMap<String, Vec<String>> = Default::default();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| err(format!("line {}: {e}", i + 1)))?;
        let id = v["task_id"]
            .as_str()
            .ok_or_else(|| err(format!("line {}: no task_id", i + 1)))?;
        let task = ds
            .task(id)
            .ok_or_else(|| err(format!("line {}: task {id} is not in the dataset", i + 1)))?;
        // apr's own samples.jsonl works too: its `program` is the whole solution.
        let whole = v["solution"].as_str().or(v["program"].as_str());
        let sol = match (whole, v["completion"].as_str()) {
            (Some(s), _) => s.to_string(),
            (None, Some(c)) => format!("{}{c}", task.prompt),
            _ => {
                return Err(err(format!(
                    "line {}: neither solution nor completion",
                    i + 1
                )))
            }
        };
        out.entry(id.to_string()).or_default().push(sol);
    }
    Ok(out)
}

fn settings(
    cfg: &EvalConfig,
    ds: &Dataset,
    model: Option<&ModelSide>,
    samples: Option<&Path>,
) -> serde_json::Value {
    json!({
        "benchmark": cfg.bench.name(),
        "subset": ds.subset.map(|s| s.to_string()),
        "dataset_sha256": ds.sha256,
        "model_sha256": model.map(|m| m.sha256.clone()),
        "samples_file": samples.map(|p| p.display().to_string()),
        "prompt_strategy": if samples.is_some() { None } else { Some(cfg.strategy.clone()) },
        "n_samples": cfg.n_samples,
        "temperature": f32_decimal(cfg.temperature),
        "top_p": f32_decimal(cfg.top_p),
        "seed": cfg.seed,
        "max_tokens": cfg.max_tokens,
        "timeout_s": cfg.timeout_s,
        "workers": cfg.workers,
        "limit": cfg.limit,
    })
}

/// An f32 setting as the f64 of its shortest decimal form (0.95, not 0.949999988079071).
fn f32_decimal(v: f32) -> f64 {
    v.to_string().parse().unwrap_or(f64::from(v))
}

#[allow(clippy::too_many_arguments)]
fn summarize(
    cfg: &EvalConfig,
    ds: &Dataset,
    tasks: &[&Task],
    records: &[SampleRecord],
    settings: &serde_json::Value,
    sandbox: &Sandbox,
    judge: &Judge,
    total: usize,
    t0: Instant,
) -> serde_json::Value {
    let order: Vec<String> = tasks.iter().map(|t| t.task_id.clone()).collect();
    let wanted: HashSet<&str> = order.iter().map(String::as_str).collect();
    let records: Vec<SampleRecord> = records
        .iter()
        .filter(|r| wanted.contains(r.task_id.as_str()))
        .cloned()
        .collect();
    let base = results::pass_at_k(&results::per_task(
        &records,
        &order,
        SampleRecord::base_passed,
    ));
    let plus = results::pass_at_k(&results::per_task(&records, &order, SampleRecord::passed));
    let n_tasks = results::per_task(&records, &order, |_| true).len();
    let gen_tokens: usize = records.iter().map(|r| r.completion_tokens).sum();
    let gen_secs: f64 = records.iter().map(|r| r.gen_s).sum();
    let mut s = json!({
        "benchmark": cfg.bench.name(),
        "n_tasks": n_tasks,
        "n_samples": records.len(),
        "complete": records.len() >= total,
        "interrupted": INTERRUPTED.load(Ordering::Relaxed),
        "dataset_sha256": ds.sha256,
        "dataset_source": ds.source,
        "model_sha256": settings["model_sha256"],
        "settings": settings,
        "isolation": sandbox.isolation().describe(),
        "judge": judge.describe(),
        "wall_s": t0.elapsed().as_secs_f64(),
        "gen_tokens": gen_tokens,
        "gen_tok_s": if gen_secs > 0.0 { gen_tokens as f64 / gen_secs } else { 0.0 },
    });
    let rerank = |pass: fn(&SampleRecord) -> bool| {
        cfg.rerank.map(|how| {
            let picked = results::pick(&records, how);
            let ok = picked.values().filter(|r| pass(r)).count();
            json!({"method": how, "pass@1": if picked.is_empty() { 0.0 } else { ok as f64 / picked.len() as f64 }})
        })
    };
    if cfg.bench.is_plus() {
        let mut b = serde_json::to_value(&base).unwrap_or_default();
        let mut p = serde_json::to_value(&plus).unwrap_or_default();
        b["rerank"] = json!(rerank(SampleRecord::base_passed));
        p["rerank"] = json!(rerank(SampleRecord::passed));
        s["base"] = b;
        s["plus"] = p;
    } else {
        for (k, v) in serde_json::to_value(&plus)
            .unwrap_or_default()
            .as_object()
            .into_iter()
            .flatten()
        {
            s[k] = v.clone();
        }
        s["rerank"] = json!(rerank(SampleRecord::passed));
    }
    s
}

fn pct(v: &serde_json::Value) -> String {
    v.as_f64()
        .map(|x| format!("{:.2}", 100.0 * x))
        .unwrap_or_else(|| "-".into())
}

fn report(s: &serde_json::Value, tasks: &[&Task], records: &[SampleRecord]) -> String {
    let mut o = String::new();
    let set = &s["settings"];
    o += &format!("# apr eval {}\n\n", s["benchmark"].as_str().unwrap_or(""));
    o += "| | |\n|---|---|\n";
    for (k, v) in [
        ("model sha256", set["model_sha256"].clone()),
        ("samples file", set["samples_file"].clone()),
        ("dataset", s["dataset_source"].clone()),
        ("dataset sha256", s["dataset_sha256"].clone()),
        ("subset", set["subset"].clone()),
        ("prompt strategy", set["prompt_strategy"].clone()),
        ("samples per task", set["n_samples"].clone()),
        (
            "temperature / top-p / seed",
            json!(format!(
                "{} / {} / {}",
                set["temperature"], set["top_p"], set["seed"]
            )),
        ),
        ("timeout per sample (s)", set["timeout_s"].clone()),
        ("sandbox", s["isolation"].clone()),
        ("judge", s["judge"].clone()),
        (
            "tasks / samples",
            json!(format!("{} / {}", s["n_tasks"], s["n_samples"])),
        ),
        ("complete", s["complete"].clone()),
        (
            "wall time (s)",
            json!(format!("{:.0}", s["wall_s"].as_f64().unwrap_or(0.0))),
        ),
        (
            "generation",
            json!(format!(
                "{} tokens, {:.1} tok/s",
                s["gen_tokens"],
                s["gen_tok_s"].as_f64().unwrap_or(0.0)
            )),
        ),
    ] {
        if !v.is_null() {
            o += &format!(
                "| {k} | {} |\n",
                v.as_str().map(str::to_string).unwrap_or(v.to_string())
            );
        }
    }
    o += "\n| | pass@1 | pass@10 | pass@100 | tasks solved | reranked pass@1 |\n|---|---|---|---|---|---|\n";
    let rows: Vec<(&str, &serde_json::Value)> = if s["plus"].is_object() {
        vec![("base", &s["base"]), ("plus", &s["plus"])]
    } else {
        vec![("tests", s)]
    };
    for (name, v) in rows {
        o += &format!(
            "| {name} | {} | {} | {} | {} | {} |\n",
            pct(&v["pass@1"]),
            pct(&v["pass@10"]),
            pct(&v["pass@100"]),
            v["tasks_solved"],
            v["rerank"]["pass@1"]
                .as_f64()
                .map(|x| format!(
                    "{:.2} ({})",
                    100.0 * x,
                    v["rerank"]["method"].as_str().unwrap_or("")
                ))
                .unwrap_or_else(|| "-".into())
        );
    }
    o += "\n## Per task\n\n| task | samples | passed | base | plus | first failure |\n|---|---|---|---|---|---|\n";
    for t in tasks {
        let rs: Vec<&SampleRecord> = records.iter().filter(|r| r.task_id == t.task_id).collect();
        if rs.is_empty() {
            continue;
        }
        let base = rs.iter().filter(|r| r.base_passed()).count();
        let plus = rs.iter().filter(|r| r.passed()).count();
        let fail = rs
            .iter()
            .find(|r| !r.passed())
            .map(|r| {
                let kind = r.error_kind.as_deref().unwrap_or(&r.status);
                let m = if r.message.starts_with(kind) {
                    r.message.clone()
                } else {
                    format!("{kind} {}", r.message)
                };
                m.replace('|', "\\|")
                    .replace('\n', " ")
                    .chars()
                    .take(80)
                    .collect::<String>()
            })
            .unwrap_or_default();
        o += &format!(
            "| {} | {} | {} | {base} | {} | {fail} |\n",
            t.task_id,
            rs.len(),
            plus,
            if rs[0].plus_status.is_some() {
                plus.to_string()
            } else {
                "-".into()
            }
        );
    }
    o
}

pub use apr_formats::provenance::file_sha256;
