//! One module per subcommand.

pub mod bench;
pub mod chat;
pub mod eval;
pub mod export;
pub mod import;
pub mod inspect;
pub mod run;
pub mod tokenize;
