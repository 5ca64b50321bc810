//! The audit sink: consumes the audit topic into an append-only store.
//!
//! Status: skeleton. Issue 5 fills it with the embedded and ScyllaDB stores, the RFC 6962
//! Merkle tree, signed checkpoints, inclusion/consistency proofs and disclosure receipts.
