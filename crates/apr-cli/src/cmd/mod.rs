//! One module per subcommand.

pub mod bench;
pub mod chat;
pub mod check;
pub mod eval;
pub mod export;
pub mod imatrix;
pub mod import;
pub mod inspect;
pub mod merge;
pub mod prune;
pub mod pull;
pub mod quantize;
pub mod run;
pub mod tokenize;
