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
    let opts = GenOptions {
        max_tokens: 100,
        sampler: SamplerConfig {
            temperature: 0.0,
            ..SamplerConfig::default()
        },
        stop: vec![],
        logprobs: 0,
    };
    let out = s
        .generate(&[785, 3974, 13876, 38835], &opts, &mut |_| {})
        .unwrap();
    assert_eq!(
        out.tokens.len() + 4,
        17,
        "fills the 16-token context, the last token unscored"
    );
}
