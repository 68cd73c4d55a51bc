//! An evaluation's results folder: `run.json` (the settings a resume must match),
//! `samples.jsonl` (one record per scored sample, appended and flushed as each is scored, so
//! an interruption loses nothing already scored), `summary.json` and `report.md`.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::passk::{mean_pass_at_k, KS};

#[derive(thiserror::Error, Debug)]
pub enum ResultsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: line {line}: {msg}")]
    Parse {
        path: PathBuf,
        line: usize,
        msg: String,
    },
    #[error(
        "{dir} holds a run with other settings ({what}: {old} there, {new} now); use another --out"
    )]
    Mismatch {
        dir: PathBuf,
        what: String,
        old: String,
        new: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ResultsError + '_ {
    move |source| ResultsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One scored sample.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SampleRecord {
    pub task_id: String,
    /// Index of the sample within its task.
    pub sample: usize,
    /// The text fed to the model for the first answer (empty for `--samples`).
    pub prompt: String,
    /// The model's last answer (or the `completion` of a samples file).
    pub completion: String,
    /// The program executed.
    pub program: String,
    /// "pass", "fail" or "timeout": the verdict counted (for the plus benchmarks, base and plus
    /// together, as EvalPlus counts them).
    pub status: String,
    pub base_status: Option<String>,
    pub plus_status: Option<String>,
    pub error_kind: Option<String>,
    pub message: String,
    pub gen_s: f64,
    pub exec_s: f64,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub stop: Option<String>,
    /// Mean log-probability of the answer's tokens, when recorded.
    pub logprob: Option<f64>,
    /// Whether the program passed the examples the prompt shows, when they were run.
    pub visible_pass: Option<bool>,
    /// Rounds of feedback used (reflexion).
    pub rounds: usize,
}

impl SampleRecord {
    /// A record with nothing filled in but its task and index.
    pub fn blank(task_id: &str, sample: usize) -> Self {
        SampleRecord {
            task_id: task_id.to_string(),
            sample,
            prompt: String::new(),
            completion: String::new(),
            program: String::new(),
            status: String::new(),
            base_status: None,
            plus_status: None,
            error_kind: None,
            message: String::new(),
            gen_s: 0.0,
            exec_s: 0.0,
            prompt_tokens: 0,
            completion_tokens: 0,
            stop: None,
            logprob: None,
            visible_pass: None,
            rounds: 0,
        }
    }

    pub fn base_passed(&self) -> bool {
        self.base_status.as_deref().unwrap_or(&self.status) == "pass"
    }
    pub fn passed(&self) -> bool {
        self.status == "pass"
    }
}

/// The results folder of one run.
pub struct Store {
    dir: PathBuf,
    file: File,
    pub records: Vec<SampleRecord>,
}

const RUN: &str = "run.json";
const SAMPLES: &str = "samples.jsonl";

/// Settings values are equal; numbers that differ only in the last digits of an f32 widened
/// to f64 (an older run.json stored 0.95 as 0.949999988079071) count as equal.
fn same_setting(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) if a.is_f64() || b.is_f64() => {
            (x - y).abs() <= 1e-6 * x.abs().max(y.abs()).max(1.0)
        }
        _ => a == b,
    }
}

impl Store {
    /// Opens (or creates) `dir` for a run with `settings`. Records already there are kept when
    /// the settings match (keys in `ignore` may differ); a torn last line from an interrupted
    /// write is dropped.
    pub fn open(
        dir: &Path,
        settings: &serde_json::Value,
        ignore: &[&str],
    ) -> Result<Store, ResultsError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let run = dir.join(RUN);
        if run.exists() {
            let old: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(&run).map_err(io(&run))?,
            )
            .map_err(|e| ResultsError::Parse {
                path: run.clone(),
                line: e.line(),
                msg: e.to_string(),
            })?;
            if let (Some(o), Some(n)) = (old.as_object(), settings.as_object()) {
                for (k, v) in n {
                    if ignore.contains(&k.as_str()) {
                        continue;
                    }
                    let ov = o.get(k).cloned().unwrap_or(serde_json::Value::Null);
                    if !same_setting(&ov, v) {
                        return Err(ResultsError::Mismatch {
                            dir: dir.to_path_buf(),
                            what: k.clone(),
                            old: ov.to_string(),
                            new: v.to_string(),
                        });
                    }
                }
            }
        }
        write_atomic(
            &run,
            &serde_json::to_string_pretty(settings).unwrap_or_default(),
        )?;
        let path = dir.join(SAMPLES);
        let mut records = Vec::new();
        let mut good_len = 0u64;
        if path.exists() {
            let f = File::open(&path).map_err(io(&path))?;
            let mut reader = BufReader::new(f);
            let mut line = String::new();
            let mut n = 0;
            loop {
                line.clear();
                let got = reader.read_line(&mut line).map_err(io(&path))?;
                if got == 0 {
                    break;
                }
                n += 1;
                if !line.ends_with('\n') {
                    break; // torn final write: dropped and rewritten
                }
                match serde_json::from_str::<SampleRecord>(line.trim_end()) {
                    Ok(r) => records.push(r),
                    Err(e) => {
                        return Err(ResultsError::Parse {
                            path: path.clone(),
                            line: n,
                            msg: e.to_string(),
                        })
                    }
                }
                good_len += got as u64;
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        file.set_len(good_len).map_err(io(&path))?;
        Ok(Store {
            dir: dir.to_path_buf(),
            file,
            records,
        })
    }

    /// Whether sample `sample` of `task_id` is already scored.
    pub fn done(&self) -> std::collections::HashSet<(String, usize)> {
        self.records
            .iter()
            .map(|r| (r.task_id.clone(), r.sample))
            .collect()
    }

    /// Appends one record and flushes it to disk.
    pub fn append(&mut self, r: SampleRecord) -> Result<(), ResultsError> {
        let path = self.dir.join(SAMPLES);
        let mut line = serde_json::to_string(&r).unwrap_or_default();
        line.push('\n');
        self.file.write_all(line.as_bytes()).map_err(io(&path))?;
        self.file.sync_data().map_err(io(&path))?;
        self.records.push(r);
        Ok(())
    }

    pub fn write_text(&self, name: &str, text: &str) -> Result<(), ResultsError> {
        write_atomic(&self.dir.join(name), text)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn write_atomic(path: &Path, text: &str) -> Result<(), ResultsError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// pass@k for k in [`KS`] (null where some task has fewer samples).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PassAtK {
    #[serde(rename = "pass@1")]
    pub pass1: Option<f64>,
    #[serde(rename = "pass@10")]
    pub pass10: Option<f64>,
    #[serde(rename = "pass@100")]
    pub pass100: Option<f64>,
    /// Tasks with at least one passing sample.
    pub tasks_solved: usize,
}

/// Per task `(n, c)` in task order, with `pass` deciding a sample.
pub fn per_task(
    records: &[SampleRecord],
    order: &[String],
    pass: impl Fn(&SampleRecord) -> bool,
) -> Vec<(usize, usize)> {
    let mut m: HashMap<&str, (usize, usize)> = HashMap::new();
    for r in records {
        let e = m.entry(r.task_id.as_str()).or_default();
        e.0 += 1;
        e.1 += pass(r) as usize;
    }
    order
        .iter()
        .filter_map(|t| m.get(t.as_str()).copied())
        .collect()
}

pub fn pass_at_k(nc: &[(usize, usize)]) -> PassAtK {
    let p = |k| mean_pass_at_k(nc, k);
    PassAtK {
        pass1: p(KS[0]),
        pass10: p(KS[1]),
        pass100: p(KS[2]),
        tasks_solved: nc.iter().filter(|(_, c)| *c > 0).count(),
    }
}

/// How one sample of n is picked for a reranked pass@1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rerank {
    /// Highest mean token log-probability.
    Logprob,
    /// The most frequent program (whitespace-normalized); ties by log-probability.
    Majority,
    /// The samples that pass the prompt's visible examples first, then by log-probability.
    SelfTest,
}

impl std::str::FromStr for Rerank {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "logprob" => Ok(Rerank::Logprob),
            "majority" => Ok(Rerank::Majority),
            "self-test" => Ok(Rerank::SelfTest),
            _ => Err(format!(
                "unknown rerank `{s}` (logprob, majority, self-test)"
            )),
        }
    }
}

/// The sample `how` picks per task (task id → record).
pub fn pick(records: &[SampleRecord], how: Rerank) -> BTreeMap<&str, &SampleRecord> {
    let mut by_task: BTreeMap<&str, Vec<&SampleRecord>> = BTreeMap::new();
    for r in records {
        by_task.entry(r.task_id.as_str()).or_default().push(r);
    }
    let lp = |r: &SampleRecord| r.logprob.unwrap_or(f64::NEG_INFINITY);
    by_task
        .into_iter()
        .filter_map(|(t, mut rs)| {
            rs.sort_by_key(|r| r.sample);
            let best = match how {
                Rerank::Logprob => rs
                    .iter()
                    .copied()
                    .max_by(|a, b| lp(a).total_cmp(&lp(b)).then(b.sample.cmp(&a.sample))),
                Rerank::Majority => {
                    let norm = |r: &SampleRecord| {
                        r.program.split_whitespace().collect::<Vec<_>>().join(" ")
                    };
                    let mut count: HashMap<String, usize> = HashMap::new();
                    for r in &rs {
                        *count.entry(norm(r)).or_default() += 1;
                    }
                    rs.iter().copied().max_by(|a, b| {
                        count[&norm(a)]
                            .cmp(&count[&norm(b)])
                            .then(lp(a).total_cmp(&lp(b)))
                            .then(b.sample.cmp(&a.sample))
                    })
                }
                Rerank::SelfTest => rs.iter().copied().max_by(|a, b| {
                    (a.visible_pass == Some(true))
                        .cmp(&(b.visible_pass == Some(true)))
                        .then(lp(a).total_cmp(&lp(b)))
                        .then(b.sample.cmp(&a.sample))
                }),
            };
            best.map(|b| (t, b))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(task: &str, sample: usize, status: &str, lp: f64, program: &str) -> SampleRecord {
        SampleRecord {
            program: program.into(),
            status: status.into(),
            logprob: Some(lp),
            visible_pass: Some(status == "pass"),
            ..SampleRecord::blank(task, sample)
        }
    }

    #[test]
    fn resume_keeps_records_and_drops_torn_line() {
        let dir = std::env::temp_dir().join(format!("apr-results-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let settings = serde_json::json!({"benchmark": "humaneval", "seed": 1, "workers": 2});
        let mut s = Store::open(&dir, &settings, &["workers"]).unwrap();
        s.append(rec("A", 0, "pass", -0.1, "x")).unwrap();
        s.append(rec("A", 1, "fail", -0.2, "y")).unwrap();
        drop(s);
        // A write cut short by an interruption.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.join(SAMPLES))
            .unwrap();
        f.write_all(b"{\"task_id\": \"A\", \"sam").unwrap();
        drop(f);
        let other_workers = serde_json::json!({"benchmark": "humaneval", "seed": 1, "workers": 8});
        let mut s = Store::open(&dir, &other_workers, &["workers"]).unwrap();
        assert_eq!(s.records.len(), 2);
        assert!(s.done().contains(&("A".to_string(), 1)));
        s.append(rec("B", 0, "pass", -0.3, "z")).unwrap();
        drop(s);
        let s = Store::open(&dir, &other_workers, &["workers"]).unwrap();
        assert_eq!(s.records.len(), 3);
        // Different settings are refused.
        let other_seed = serde_json::json!({"benchmark": "humaneval", "seed": 2, "workers": 8});
        assert!(matches!(
            Store::open(&dir, &other_seed, &["workers"]),
            Err(ResultsError::Mismatch { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn widened_f32_settings_match_their_decimal() {
        let old = serde_json::json!(f64::from(0.95f32));
        assert!(same_setting(&old, &serde_json::json!(0.95)));
        assert!(!same_setting(&old, &serde_json::json!(0.9)));
        assert!(!same_setting(&serde_json::json!(1), &serde_json::json!(2)));
        assert!(same_setting(
            &serde_json::Value::Null,
            &serde_json::Value::Null
        ));
        assert!(!same_setting(
            &serde_json::json!(0.0),
            &serde_json::Value::Null
        ));
    }

    #[test]
    fn pass_at_k_per_task_and_reranks() {
        let rs = vec![
            rec("A", 0, "fail", -0.5, "a  b"),
            rec("A", 1, "pass", -0.1, "c"),
            rec("A", 2, "fail", -0.9, "a b"),
            rec("B", 0, "fail", -0.2, "d"),
        ];
        let order = vec!["A".to_string(), "B".to_string()];
        let nc = per_task(&rs, &order, SampleRecord::passed);
        assert_eq!(nc, vec![(3, 1), (1, 0)]);
        let p = pass_at_k(&nc);
        assert!((p.pass1.unwrap() - (1.0 / 3.0) / 2.0).abs() < 1e-12);
        assert_eq!(p.pass10, None);
        assert_eq!(p.tasks_solved, 1);
        assert_eq!(pick(&rs, Rerank::Logprob)["A"].sample, 1);
        // "a  b" and "a b" normalize to the same program: the majority.
        assert_eq!(pick(&rs, Rerank::Majority)["A"].sample, 0);
        assert_eq!(pick(&rs, Rerank::SelfTest)["A"].sample, 1);
        assert_eq!(pick(&rs, Rerank::SelfTest)["B"].sample, 0);
    }
}
