//! `zenvelope audit verify`: recompute the tree from the stored events and check every
//! row and every signed checkpoint against it.
//!
//! What each check catches:
//! - a row's value no longer hashes to its stored leaf hash: the event was edited;
//! - a row's index is not the next one: rows were deleted (or inserted with gaps);
//! - the root recomputed after a row differs from the root stored with it: rows were
//!   moved, inserted or replaced, even when their own leaf hashes were rewritten to match;
//! - a query column (event id, time, tenant, subject, operation) differs from the event
//!   the row holds: the row was edited to hide it from queries;
//! - a checkpoint whose signature does not verify, or whose signed root differs from the
//!   recomputed root at its size: the log was rewritten, at the latest before that size.
//!
//! An attacker holding the store can rewrite every row and every stored root
//! consistently; only the signed checkpoints (and a checkpoint the auditor kept, passed
//! as `trusted`) catch that, and they can place it only between two checkpoints.

use std::collections::HashMap;

use serde::Serialize;
use uuid::Uuid;
use zenvelope_schemas::SchemaCodec;

use crate::Error;
use crate::merkle::{Hash, MerkleTree, leaf_hash, verify_consistency};
use crate::note::{Checkpoint, Verifier};
use crate::sink::decode_record;
use crate::store::{AuditStore, READ_PAGE_ROWS, StoredCheckpoint};

/// Most row problems listed in one report (the first one is what matters; the rest show
/// the extent).
pub const MAX_LISTED_PROBLEMS: usize = 100;

/// One thing found wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Problem {
    /// No row holds this index, but later rows exist: rows were deleted.
    RowMissing {
        /// The first missing index.
        index: u64,
        /// The index found in its place.
        found_index: u64,
    },
    /// The row's value does not hash to its stored leaf hash: the event was edited.
    LeafMismatch {
        /// The row.
        index: u64,
    },
    /// The root recomputed after this row differs from the root stored with it: this is
    /// the first row that was moved, inserted, replaced or edited.
    RootMismatch {
        /// The row.
        index: u64,
    },
    /// A query column differs from the event the row holds, or the value is not an
    /// `AuditEvent` at all.
    ColumnMismatch {
        /// The row.
        index: u64,
        /// The column.
        column: &'static str,
    },
    /// Two rows hold the same event id.
    DuplicateEvent {
        /// The later row.
        index: u64,
        /// The row that held the id first.
        first_index: u64,
    },
    /// The row's entry in the store's by-subject query index is missing or altered, so
    /// queries by tenant or subject (and `audit disclosures`) would not show it.
    QueryIndex {
        /// The row.
        index: u64,
    },
    /// A stored checkpoint's signature does not verify with the given key (or it is not
    /// a checkpoint of this log's origin).
    CheckpointSignature {
        /// The size the stored row claims.
        size: u64,
        /// Why it was refused.
        reason: String,
    },
    /// A checkpoint's stored columns differ from what its signed note says.
    CheckpointColumns {
        /// The size the stored row claims.
        size: u64,
    },
    /// A signed checkpoint commits to more rows than the log holds: rows were deleted
    /// from the end.
    CheckpointBeyondLog {
        /// The signed size.
        size: u64,
        /// The log's size.
        log_size: u64,
    },
    /// The root signed for this size differs from the recomputed root: the log was
    /// rewritten at an index below `size` (and at or above `after`, the last checkpoint
    /// that matched).
    CheckpointRoot {
        /// The signed size.
        size: u64,
        /// The size of the last checkpoint that matched (0 if none).
        after: u64,
    },
    /// The checkpoint the auditor trusts does not match this log: the log was rewritten
    /// since (or belongs to another origin).
    TrustedCheckpoint {
        /// Its size.
        size: u64,
        /// Why it does not match.
        reason: String,
    },
}

impl Problem {
    /// The row index this problem points at, when it points at one.
    pub fn index(&self) -> Option<u64> {
        match self {
            Problem::RowMissing { index, .. }
            | Problem::LeafMismatch { index }
            | Problem::RootMismatch { index }
            | Problem::ColumnMismatch { index, .. }
            | Problem::QueryIndex { index }
            | Problem::DuplicateEvent { index, .. } => Some(*index),
            Problem::CheckpointBeyondLog { log_size, .. } => Some(*log_size),
            Problem::CheckpointRoot { after, .. } => Some(*after),
            Problem::CheckpointSignature { .. }
            | Problem::CheckpointColumns { .. }
            | Problem::TrustedCheckpoint { .. } => None,
        }
    }

    /// Whether this problem names one row (rather than a range, through a checkpoint).
    pub fn is_row_problem(&self) -> bool {
        matches!(
            self,
            Problem::RowMissing { .. }
                | Problem::LeafMismatch { .. }
                | Problem::RootMismatch { .. }
                | Problem::ColumnMismatch { .. }
                | Problem::QueryIndex { .. }
                | Problem::DuplicateEvent { .. }
        )
    }

    /// One sentence for people.
    pub fn describe(&self) -> String {
        match self {
            Problem::RowMissing { index, found_index } => format!(
                "row {index} is missing (the next row found is {found_index}): rows were deleted"
            ),
            Problem::LeafMismatch { index } => {
                format!("row {index}: the event does not hash to its stored leaf hash (edited)")
            }
            Problem::RootMismatch { index } => format!(
                "row {index}: the tree root after it differs from the stored one (moved, inserted, replaced or edited)"
            ),
            Problem::ColumnMismatch { index, column } => {
                format!("row {index}: the {column} column differs from the event it holds")
            }
            Problem::QueryIndex { index } => format!(
                "row {index}: its entry in the by-subject query index is missing or altered (queries by subject would not show it)"
            ),
            Problem::DuplicateEvent { index, first_index } => {
                format!("row {index} repeats the event id of row {first_index}")
            }
            Problem::CheckpointSignature { size, reason } => {
                format!("the checkpoint stored for size {size} is not validly signed: {reason}")
            }
            Problem::CheckpointColumns { size } => format!(
                "the checkpoint stored for size {size} has columns that differ from its signed note"
            ),
            Problem::CheckpointBeyondLog { size, log_size } => format!(
                "a signed checkpoint covers {size} rows but the log holds {log_size}: rows were deleted from the end"
            ),
            Problem::CheckpointRoot { size, after } => format!(
                "the root signed for size {size} differs from the recomputed one: a row in [{after}, {size}) was altered"
            ),
            Problem::TrustedCheckpoint { size, reason } => {
                format!("the trusted checkpoint of size {size} does not match: {reason}")
            }
        }
    }
}

/// What `verify` found.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Rows in the log.
    pub size: u64,
    /// Root recomputed over all rows, hex.
    pub root: String,
    /// Stored checkpoints whose signature and root were checked and matched.
    pub checkpoints_valid: usize,
    /// Stored checkpoints in all.
    pub checkpoints_stored: usize,
    /// Size of the newest valid checkpoint (0 if none).
    pub covered_size: u64,
    /// Where to start looking: the lowest row a row problem names; when only
    /// checkpoints failed (a consistent rewrite), the start of the first failing
    /// checkpoint's range.
    pub first_bad_index: Option<u64>,
    /// Everything found wrong, in the order found (row problems capped at
    /// [`MAX_LISTED_PROBLEMS`]).
    pub problems: Vec<Problem>,
    /// Row problems not listed because of the cap.
    pub problems_not_listed: u64,
    /// The consistency proof from the trusted checkpoint to the newest valid one, hex
    /// hashes, when a trusted checkpoint was given and matched.
    pub consistency_proof: Option<Vec<String>>,
    /// Whether the store's by-subject query index was checked against the rows (the
    /// embedded store's is; the ScyllaDB store's is not).
    pub query_index_checked: bool,
}

impl Report {
    /// Whether nothing was found wrong.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks the whole log in `store` against checkpoints signed by `verifier`; `trusted`
/// is a checkpoint the auditor kept from an earlier audit (or from the checkpoints
/// topic), which this log must extend. `progress` is called with rows read so far.
pub async fn verify<S: AuditStore>(
    store: &S,
    codec: &SchemaCodec,
    verifier: &Verifier,
    trusted: Option<&Checkpoint>,
    mut progress: impl FnMut(u64, u64),
) -> Result<Report, Error> {
    let stored_checkpoints = store.checkpoints().await?;
    let mut problems = Vec::new();
    let mut not_listed = 0u64;
    let mut push_row_problem = |problems: &mut Vec<Problem>, p: Problem| {
        if problems.len() < MAX_LISTED_PROBLEMS {
            problems.push(p);
        } else {
            not_listed += 1;
        }
    };

    // Signed checkpoints first: which sizes we must compare roots at.
    let mut signed: Vec<Checkpoint> = Vec::new();
    for stored in &stored_checkpoints {
        match Checkpoint::open(&stored.note, verifier) {
            Ok(cp) => {
                if cp.size != stored.size || cp.root != stored.root {
                    problems.push(Problem::CheckpointColumns { size: stored.size });
                }
                signed.push(cp);
            }
            Err(error) => problems.push(Problem::CheckpointSignature {
                size: stored.size,
                reason: error.to_string(),
            }),
        }
    }
    signed.sort_by_key(|c| c.size);

    // Walk the rows.
    let size = store.size().await?;
    let mut tree = MerkleTree::new();
    let mut ids: HashMap<Uuid, u64> = HashMap::new();
    let mut structural_reported = false;
    let mut from = 0;
    while from < size {
        let to = (from + READ_PAGE_ROWS).min(size);
        for row in store.read_range(from, to).await? {
            let position = tree.size();
            if row.index != position && !structural_reported {
                push_row_problem(
                    &mut problems,
                    Problem::RowMissing {
                        index: position,
                        found_index: row.index,
                    },
                );
                structural_reported = true;
            }
            let leaf = leaf_hash(&row.record.value);
            if leaf != row.leaf_hash {
                push_row_problem(&mut problems, Problem::LeafMismatch { index: row.index });
            }
            tree.push(leaf);
            if !structural_reported && tree.root() != row.root_after {
                push_row_problem(&mut problems, Problem::RootMismatch { index: row.index });
                // Every later stored root differs too; one report is the useful one.
                structural_reported = true;
            }
            match decode_record(codec, &row.record.value).await {
                Ok(decoded) => {
                    let columns: [(&'static str, bool); 5] = [
                        ("event_id", decoded.event_id == row.record.event_id),
                        (
                            "occurred_at_ms",
                            decoded.occurred_at_ms == row.record.occurred_at_ms,
                        ),
                        ("tenant", decoded.tenant == row.record.tenant),
                        ("subject", decoded.subject == row.record.subject),
                        ("operation", decoded.operation == row.record.operation),
                    ];
                    for (column, ok) in columns {
                        if !ok {
                            push_row_problem(
                                &mut problems,
                                Problem::ColumnMismatch {
                                    index: row.index,
                                    column,
                                },
                            );
                        }
                    }
                }
                Err(_) => push_row_problem(
                    &mut problems,
                    Problem::ColumnMismatch {
                        index: row.index,
                        column: "value",
                    },
                ),
            }
            if let Some(first) = ids.insert(row.record.event_id, row.index) {
                push_row_problem(
                    &mut problems,
                    Problem::DuplicateEvent {
                        index: row.index,
                        first_index: first,
                    },
                );
            }
        }
        progress(to, size);
        from = to;
    }

    // The store's own query index: a row missing from it is hidden from queries.
    let query_index_checked = match store
        .query_index_problems(MAX_LISTED_PROBLEMS as u64)
        .await?
    {
        Some(bad) => {
            for index in bad {
                push_row_problem(&mut problems, Problem::QueryIndex { index });
            }
            true
        }
        None => false,
    };

    // Checkpoints against the recomputed tree.
    let log_size = tree.size();
    let mut valid = 0usize;
    let mut covered = 0u64;
    for cp in &signed {
        if cp.size > log_size {
            problems.push(Problem::CheckpointBeyondLog {
                size: cp.size,
                log_size,
            });
            continue;
        }
        if tree.root_at(cp.size).ok() == Some(cp.root) {
            valid += 1;
            covered = covered.max(cp.size);
        } else {
            problems.push(Problem::CheckpointRoot {
                size: cp.size,
                after: covered,
            });
        }
    }

    // The auditor's trusted checkpoint: this log must extend it.
    let mut consistency_proof = None;
    if let Some(trusted) = trusted {
        match check_trusted(&tree, trusted, covered) {
            Ok(proof) => consistency_proof = Some(proof.iter().map(hex::encode).collect()),
            Err(reason) => problems.push(Problem::TrustedCheckpoint {
                size: trusted.size,
                reason,
            }),
        }
    }

    let first_bad_index = problems
        .iter()
        .filter(|p| p.is_row_problem())
        .filter_map(Problem::index)
        .min()
        .or_else(|| problems.iter().filter_map(Problem::index).min());
    Ok(Report {
        size: log_size,
        root: hex::encode(tree.root()),
        checkpoints_valid: valid,
        checkpoints_stored: stored_checkpoints.len(),
        covered_size: covered,
        first_bad_index,
        problems,
        problems_not_listed: not_listed,
        consistency_proof,
        query_index_checked,
    })
}

/// The consistency proof from `trusted` to the newest valid checkpoint, checked with the
/// independent verifier; or why the log does not extend `trusted`.
fn check_trusted(
    tree: &MerkleTree,
    trusted: &Checkpoint,
    covered: u64,
) -> Result<Vec<Hash>, String> {
    if trusted.size > tree.size() {
        return Err(format!(
            "it covers {} rows but the log holds {}",
            trusted.size,
            tree.size()
        ));
    }
    let root = tree.root_at(trusted.size).map_err(|e| e.to_string())?;
    if root != trusted.root {
        return Err("its root differs from the log's root at its size".to_owned());
    }
    let target = covered.max(trusted.size);
    let new_root = tree.root_at(target).map_err(|e| e.to_string())?;
    let proof = tree
        .consistency_proof(trusted.size, target)
        .map_err(|e| e.to_string())?;
    verify_consistency(trusted.size, target, &trusted.root, &new_root, &proof)
        .map_err(|e| format!("the consistency proof does not verify: {e}"))?;
    Ok(proof)
}

/// An inclusion proof for one event against a signed checkpoint.
#[derive(Clone, Debug, Serialize)]
pub struct InclusionProof {
    /// The event.
    pub event_id: Uuid,
    /// Its row.
    pub index: u64,
    /// RFC 6962 leaf hash of the stored value, hex.
    pub leaf_hash: String,
    /// The Kafka record value the leaf hashes, base64 (an `AuditEvent`; no PHI).
    pub value_base64: String,
    /// The checkpoint the proof is against (its signed note).
    pub checkpoint: String,
    /// Tree size of that checkpoint.
    pub tree_size: u64,
    /// Its root, hex.
    pub root: String,
    /// The audit path, hex hashes, leaf to root.
    pub proof: Vec<String>,
}

/// Builds and checks an inclusion proof of `event_id` against the newest stored
/// checkpoint that covers it and verifies with `verifier`. `Ok(None)` when the event is
/// not in the log; an error when no valid checkpoint covers it yet.
pub async fn prove<S: AuditStore>(
    store: &S,
    verifier: &Verifier,
    event_id: Uuid,
) -> Result<Option<InclusionProof>, Error> {
    let Some(row) = store.find(event_id).await? else {
        return Ok(None);
    };
    let checkpoints = store.checkpoints().await?;
    let newest = newest_valid_covering(&checkpoints, verifier, row.index + 1);
    let Some((cp, note)) = newest else {
        return Err(Error::NotCovered { index: row.index });
    };
    let mut leaves = Vec::with_capacity(usize::try_from(cp.size).unwrap_or(0));
    let mut from = 0;
    while from < cp.size {
        let to = (from + READ_PAGE_ROWS).min(cp.size);
        leaves.extend(
            store
                .read_range(from, to)
                .await?
                .into_iter()
                .map(|r| leaf_hash(&r.record.value)),
        );
        from = to;
    }
    let tree = MerkleTree::from_leaves(leaves);
    let leaf = leaf_hash(&row.record.value);
    let proof = tree
        .inclusion_proof(row.index, cp.size)
        .map_err(|_| Error::NotCovered { index: row.index })?;
    crate::merkle::verify_inclusion(&leaf, row.index, cp.size, &proof, &cp.root).map_err(|_| {
        Error::Tampered {
            index: row.index,
            reason: "the stored rows do not prove inclusion under the signed checkpoint",
        }
    })?;
    use base64::Engine as _;
    Ok(Some(InclusionProof {
        event_id,
        index: row.index,
        leaf_hash: hex::encode(leaf),
        value_base64: base64::engine::general_purpose::STANDARD.encode(&row.record.value),
        checkpoint: note,
        tree_size: cp.size,
        root: hex::encode(cp.root),
        proof: proof.iter().map(hex::encode).collect(),
    }))
}

/// The newest checkpoint of at least `min_size` whose note verifies.
fn newest_valid_covering(
    checkpoints: &[StoredCheckpoint],
    verifier: &Verifier,
    min_size: u64,
) -> Option<(Checkpoint, String)> {
    checkpoints
        .iter()
        .rev()
        .filter(|c| c.size >= min_size)
        .find_map(|c| {
            Checkpoint::open(&c.note, verifier)
                .ok()
                .map(|cp| (cp, c.note.clone()))
        })
}
