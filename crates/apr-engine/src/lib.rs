//! apr-engine
