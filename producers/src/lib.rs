//! Producer SDK (issue 4).
