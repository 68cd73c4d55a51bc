//! Engine-level errors on the real 0.5B model: out-of-range ids and a full context.

use apr_engine::{Engine, EngineError, GenOptions, SamplerConfig};
mod common;
use common::model;

use apr_models::ModelError;

#[test]
fn out_of_range_ids_and_full_context_are_errors() {
    let e = Engine::load(&model(), 2).unwrap();
    let mut s = e.session(16);
    match s.prefill(&[1, 2, 151936]) {
        Err(EngineError::Model(ModelError::TokenOutOfRange {
            id: 151936,
            n_vocab: 151936,
        })) => {}
        other => panic!("expected TokenOutOfRange, got {:?}", other.map(|l| l.len())),
    }
    assert!(matches!(
        s.prefill(&[7; 17]),
        Err(EngineError::PromptTooLong { n: 17, ctx: 16 })
    ));
    assert!(matches!(s.prefill(&[]), Err(EngineError::EmptyPrompt)));
    // Generation stops at the context's end instead of failing.
    let opts = greedy(100);
    let out = s
        .generate(&[785, 3974, 13876, 38835], &opts, &mut |_| {})
        .unwrap();
    assert_eq!(
        out.tokens.len() + 4,
        17,
        "fills the 16-token context, the last token unscored"
    );
}

/// Each thread's f16 attention accumulator is `head_dim` long whatever the context: a context
/// shorter than `head_dim` (16 < 64 here) once made the threads' accumulators overlap, and the
/// greedy tokens changed from run to run.
#[test]
fn a_short_context_decodes_like_a_long_one() {
    let e = Engine::load(&model(), 2).unwrap();
    let opts = greedy(12);
    let prompt = [785, 3974, 13876, 38835];
    let long = e
        .session(4096)
        .generate(&prompt, &opts, &mut |_| {})
        .unwrap();
    for _ in 0..3 {
        let short = e.session(16).generate(&prompt, &opts, &mut |_| {}).unwrap();
        assert_eq!(
            short.tokens, long.tokens,
            "{:?} vs {:?}",
            short.text, long.text
        );
    }
}

/// Greedy decoding of at most `max_tokens`, no stop strings.
fn greedy(max_tokens: usize) -> GenOptions {
    GenOptions {
        max_tokens,
        sampler: SamplerConfig {
            temperature: 0.0,
            ..SamplerConfig::default()
        },
        stop: vec![],
        logprobs: 0,
    }
}
