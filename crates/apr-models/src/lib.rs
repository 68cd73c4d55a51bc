//! apr-models
