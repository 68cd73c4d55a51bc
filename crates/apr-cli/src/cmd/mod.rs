//! One module per subcommand.

pub mod bench;
pub mod chat;
pub mod eval;
pub mod inspect;
pub mod quantize;
pub mod run;
pub mod tokenize;
