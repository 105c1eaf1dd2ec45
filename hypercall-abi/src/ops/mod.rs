//! Sub-operations of individual hypercalls.
