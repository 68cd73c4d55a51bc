//! Shared by the engine's tests on the real model.

/// The real 0.5B model in the model cache (scripts/fetch-models.sh puts it there).
pub fn model() -> std::path::PathBuf {
    let p = apr_engine::resolve::models_dir().join("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf");
    assert!(
        p.is_file(),
        "{} missing: run scripts/fetch-models.sh 0.5b",
        p.display()
    );
    p
}
