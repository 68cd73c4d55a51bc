//! Several sequences decoded together (`Engine::step_many`, one batched forward pass per step)
//! give the greedy tokens and logits of decoding each alone, on the real 0.5B model.

use apr_engine::{Engine, EngineError};
mod common;
use common::model;

use apr_models::{ModelError, Scratch};

/// Decode steps compared after each prompt's prefill.
const STEPS: usize = 8;
/// Largest allowed `max |logit diff| / max |logit|` between batched and alone.
const TOLERANCE: f32 = 1e-3;

fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

/// Greedy tokens and the logits after each of them, decoding alone: `[STEPS][n_vocab]`.
fn alone(e: &Engine, prompt: &[u32]) -> (Vec<u32>, Vec<Vec<f32>>) {
    let mut s = e.session(256);
    let mut tok = argmax(s.prefill(prompt).unwrap());
    let (mut toks, mut logits) = (vec![tok], Vec::new());
    for _ in 0..STEPS {
        let l = s.step(tok).unwrap().to_vec();
        tok = argmax(&l);
        toks.push(tok);
        logits.push(l);
    }
    (toks, logits)
}

#[test]
fn batched_decode_matches_decoding_each_alone() {
    let e = Engine::load(&model(), 2).unwrap();
    let nv = e.model.cfg.n_vocab;
    // Different lengths: the rows of one step sit at different positions.
    let texts = [
        "def fibonacci(n):",
        "// Sort an array of integers in place with quicksort.\nvoid quicksort(int *a, int n) {",
        "The capital of France is",
    ];
    let prompts: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| e.tokenizer.encode(t).unwrap())
        .collect();
    let want: Vec<_> = prompts.iter().map(|p| alone(&e, p)).collect();

    let mut sessions: Vec<_> = prompts.iter().map(|_| e.session(256)).collect();
    let mut ids: Vec<u32> = sessions
        .iter_mut()
        .zip(&prompts)
        .map(|(s, p)| argmax(s.prefill(p).unwrap()))
        .collect();
    let mut refs: Vec<_> = sessions.iter_mut().collect();
    let mut scratch = Scratch::default();
    let mut worst = 0f32;
    for step in 0..STEPS {
        for (i, w) in want.iter().enumerate() {
            assert_eq!(ids[i], w.0[step], "sequence {i}, step {step}: greedy token");
        }
        let logits = e.step_many(&mut refs, &ids, &mut scratch).unwrap();
        assert_eq!(logits.len(), prompts.len() * nv);
        for (i, (row, w)) in logits.chunks_exact(nv).zip(&want).enumerate() {
            let max_abs = w.1[step].iter().fold(0f32, |m, x| m.max(x.abs()));
            let diff = row
                .iter()
                .zip(&w.1[step])
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            let rel = diff / max_abs;
            assert!(rel < TOLERANCE, "sequence {i}, step {step}: rel diff {rel}");
            worst = worst.max(rel);
            ids[i] = argmax(row);
        }
    }
    for (i, w) in want.iter().enumerate() {
        assert_eq!(ids[i], w.0[STEPS], "sequence {i}: last greedy token");
        assert_eq!(refs[i].tokens.len(), prompts[i].len() + STEPS);
    }
    eprintln!("worst max|diff|/max|logit| over {STEPS} steps: {worst:e}");

    // One id per session, sessions of this engine only.
    assert!(matches!(
        e.step_many(&mut refs, &ids[..1], &mut scratch),
        Err(EngineError::Model(ModelError::Batch(_)))
    ));
    let other = Engine::load(&model(), 1).unwrap();
    let mut foreign = other.session(16);
    assert!(matches!(
        e.step_many(&mut [&mut foreign], &[1], &mut scratch),
        Err(EngineError::ForeignSession)
    ));
}
