//! apr-eval
