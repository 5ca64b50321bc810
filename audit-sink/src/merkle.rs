//! RFC 6962 Merkle tree hashing, compact ranges, and inclusion and consistency proofs.
//!
//! Hashing follows RFC 6962 §2.1 (unchanged in RFC 9162 §2.1.1):
//!
//! * the hash of a leaf is `SHA-256(0x00 || data)` ([`leaf_hash`]);
//! * the hash of an interior node is `SHA-256(0x01 || left || right)` ([`node_hash`]);
//! * the Merkle tree hash (MTH) of the empty tree is `SHA-256("")` ([`empty_root`]);
//! * for `n > 1` leaves, with `k` the largest power of two strictly below `n`,
//!   `MTH(D[n]) = node_hash(MTH(D[0:k]), MTH(D[k:n]))`.
//!
//! Three pieces build on this:
//!
//! * [`CompactRange`] keeps only the roots of the perfect subtrees covering `[0, size)`
//!   (at most 64 hashes) and is what a running log keeps in memory to compute its root;
//! * [`MerkleTree`] keeps every leaf hash plus the hashes of all perfect subtrees, so
//!   that roots of any prefix, inclusion proofs (RFC 6962 §2.1.1, `PATH(m, D[n])`) and
//!   consistency proofs (RFC 6962 §2.1.2, `PROOF(m, D[n])`) cost `O(log n)` lookups and
//!   at most `O(log² n)` hashes;
//! * [`verify_inclusion`] and [`verify_consistency`] implement the iterative
//!   verification algorithms of RFC 9162 §2.1.3.2 and §2.1.4.2. They share no code with
//!   proof generation, so each checks the other.
//!
//! # Conventions for degenerate proofs
//!
//! These follow RFC 9162 and `github.com/transparency-dev/merkle`:
//!
//! * an inclusion proof exists only for `index < size`; in a tree of one leaf it is
//!   empty and the leaf hash is the root;
//! * the consistency proof from `old_size` to `new_size` is empty when
//!   `old_size == new_size` (the roots must then be equal) or when `old_size == 0`
//!   (every tree extends the empty tree). [`verify_consistency`] is slightly stricter
//!   than transparency-dev in that last case: it requires `old_root` to be
//!   [`empty_root`], the only correct root of the empty tree;
//! * `old_size > new_size` is an error, never a proof.

use aws_lc_rs::digest;

/// A SHA-256 hash: a leaf hash, an interior node hash or a tree root.
pub type Hash = [u8; 32];

/// Domain-separation prefix of a leaf hash (RFC 6962 §2.1).
const LEAF_PREFIX: u8 = 0x00;
/// Domain-separation prefix of an interior node hash (RFC 6962 §2.1).
const NODE_PREFIX: u8 = 0x01;

/// Why a Merkle tree operation or proof verification failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// A leaf index is not below the tree size it refers to.
    #[error("The leaf index {index} is out of range for a tree of {size} leaves.")]
    IndexOutOfRange {
        /// The requested leaf index.
        index: u64,
        /// The tree size the index was checked against.
        size: u64,
    },
    /// A tree size is larger than the number of leaves available.
    #[error("The tree size {size} is out of range: only {available} leaves are available.")]
    SizeOutOfRange {
        /// The requested tree size.
        size: u64,
        /// The number of leaves the tree actually has.
        available: u64,
    },
    /// A consistency proof was requested or checked from a larger tree to a smaller one.
    #[error(
        "The old tree size {old_size} is larger than the new tree size {new_size}, so no consistency proof can exist."
    )]
    SizesOutOfOrder {
        /// The size of the older tree.
        old_size: u64,
        /// The size of the newer tree.
        new_size: u64,
    },
    /// A proof has a different number of hashes than the sizes and index require.
    #[error("The proof has {got} hashes, but {expected} are required for these tree sizes.")]
    WrongProofLength {
        /// The number of hashes the proof must have.
        expected: usize,
        /// The number of hashes the proof has.
        got: usize,
    },
    /// The root recomputed from a proof differs from the expected root.
    #[error("The root hash recomputed from the proof does not match the expected root hash.")]
    RootMismatch,
    /// A compact range was restored from a number of hashes that does not fit its size.
    #[error(
        "A compact range of size {size} needs {expected} subtree hashes, but {got} were given."
    )]
    WrongCompactRangeLength {
        /// The size of the range.
        size: u64,
        /// The number of hashes a range of that size has (the number of one bits of `size`).
        expected: usize,
        /// The number of hashes given.
        got: usize,
    },
}

/// Hashes one finished SHA-256 computation over the concatenation of `parts`.
fn sha256(parts: &[&[u8]]) -> Hash {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for part in parts {
        ctx.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Returns the RFC 6962 leaf hash `SHA-256(0x00 || data)` of one log entry.
pub fn leaf_hash(data: &[u8]) -> Hash {
    sha256(&[&[LEAF_PREFIX], data])
}

/// Returns the RFC 6962 interior node hash `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    sha256(&[&[NODE_PREFIX], left, right])
}

/// Returns the Merkle tree hash of the empty tree, `SHA-256("")`.
pub fn empty_root() -> Hash {
    sha256(&[])
}

/// Folds the roots of consecutive perfect subtrees (left to right, decreasing sizes)
/// into the root of the tree they cover: `node(h0, node(h1, … node(h_{k-2}, h_{k-1})))`.
fn fold_right<'a>(mut hashes: impl DoubleEndedIterator<Item = &'a Hash>) -> Option<Hash> {
    let mut acc = *hashes.next_back()?;
    for h in hashes.rev() {
        acc = node_hash(h, &acc);
    }
    Some(acc)
}

/// The roots of the perfect subtrees covering the leaves `[0, size)`: a Merkle tree's
/// "frontier".
///
/// It holds one hash per one bit of `size` (at most 64), largest subtree first, and
/// is enough to compute the tree root and to keep appending. Appending costs amortised
/// one hash per leaf; [`CompactRange::root`] costs at most 63 hashes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactRange {
    /// The number of leaves covered.
    size: u64,
    /// Roots of the perfect subtrees, left (largest) to right (smallest).
    hashes: Vec<Hash>,
}

impl CompactRange {
    /// Returns the compact range of the empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Restores a compact range from its size and subtree roots, as returned by
    /// [`CompactRange::hashes`] (for example after reading them back from storage).
    ///
    /// # Errors
    ///
    /// [`ProofError::WrongCompactRangeLength`] if `hashes` does not have exactly one
    /// hash per one bit of `size`.
    pub fn from_parts(size: u64, hashes: Vec<Hash>) -> Result<Self, ProofError> {
        let expected = size.count_ones() as usize;
        if hashes.len() != expected {
            return Err(ProofError::WrongCompactRangeLength {
                size,
                expected,
                got: hashes.len(),
            });
        }
        Ok(Self { size, hashes })
    }

    /// Returns the number of leaves covered.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Returns the roots of the perfect subtrees covering `[0, size)`, largest first.
    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// Appends one leaf hash (see [`leaf_hash`]).
    ///
    /// # Panics
    ///
    /// Panics if the range already covers `u64::MAX` leaves, which cannot happen in
    /// practice.
    pub fn push(&mut self, leaf: Hash) {
        let mut merged = leaf;
        let mut size = self.size;
        // Each trailing one bit of the old size is a perfect subtree of the same height
        // as `merged`, immediately to its left: merge them.
        while size & 1 == 1 {
            if let Some(left) = self.hashes.pop() {
                merged = node_hash(&left, &merged);
            }
            size >>= 1;
        }
        self.hashes.push(merged);
        self.size = self
            .size
            .checked_add(1)
            .expect("a compact range cannot hold more than u64::MAX leaves");
    }

    /// Returns the Merkle tree hash of the leaves `[0, size)`.
    pub fn root(&self) -> Hash {
        fold_right(self.hashes.iter()).unwrap_or_else(empty_root)
    }
}

/// A Merkle tree over leaf hashes, able to produce roots and proofs for any prefix.
///
/// `levels[0]` holds the leaf hashes and `levels[h][i]` the root of the perfect subtree
/// of height `h` covering the leaves `[i·2^h, (i+1)·2^h)`. Appending a leaf costs
/// amortised one hash, memory is about two hashes per leaf, and the root of any prefix
/// is the fold of at most 64 cached subtree roots.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MerkleTree {
    /// Perfect-subtree hashes per height; `levels[0]` are the leaves.
    levels: Vec<Vec<Hash>>,
}

impl MerkleTree {
    /// Returns an empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a tree from leaf hashes (see [`leaf_hash`]), in log order.
    pub fn from_leaves(leaves: impl IntoIterator<Item = Hash>) -> Self {
        let mut tree = Self::new();
        for leaf in leaves {
            tree.push(leaf);
        }
        tree
    }

    /// Appends one leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut hash = leaf;
        let mut height = 0;
        loop {
            if self.levels.len() == height {
                self.levels.push(Vec::new());
            }
            let level = &mut self.levels[height];
            level.push(hash);
            let len = level.len();
            if len % 2 == 1 {
                break;
            }
            // The new hash completed a pair: their parent is a new perfect subtree.
            hash = node_hash(&level[len - 2], &level[len - 1]);
            height += 1;
        }
    }

    /// Returns the number of leaves.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |leaves| leaves.len() as u64)
    }

    /// Returns the hash of leaf `index`, if the tree has that many leaves.
    pub fn leaf(&self, index: u64) -> Option<Hash> {
        let index = usize::try_from(index).ok()?;
        self.levels.first()?.get(index).copied()
    }

    /// Returns the root of the whole tree ([`empty_root`] for an empty tree).
    pub fn root(&self) -> Hash {
        self.range_hash(0, self.size())
    }

    /// Returns the root of the tree made of the first `size` leaves.
    ///
    /// # Errors
    ///
    /// [`ProofError::SizeOutOfRange`] if `size` exceeds [`MerkleTree::size`].
    pub fn root_at(&self, size: u64) -> Result<Hash, ProofError> {
        self.check_size(size)?;
        Ok(self.range_hash(0, size))
    }

    /// Returns the compact range (frontier) of the first `size` leaves, for example
    /// to seed a [`CompactRange`] after rebuilding a tree from storage.
    ///
    /// # Errors
    ///
    /// [`ProofError::SizeOutOfRange`] if `size` exceeds [`MerkleTree::size`].
    pub fn compact_range_at(&self, size: u64) -> Result<CompactRange, ProofError> {
        self.check_size(size)?;
        let hashes = self.perfect_subtrees(0, size);
        CompactRange::from_parts(size, hashes)
    }

    /// Returns the inclusion proof of leaf `index` in the tree of the first `size`
    /// leaves: RFC 6962 §2.1.1 `PATH(index, D[size])`, sibling hashes from the leaf up.
    ///
    /// # Errors
    ///
    /// [`ProofError::SizeOutOfRange`] if `size` exceeds [`MerkleTree::size`], and
    /// [`ProofError::IndexOutOfRange`] if `index >= size`.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        self.check_size(size)?;
        if index >= size {
            return Err(ProofError::IndexOutOfRange { index, size });
        }
        let mut proof = Vec::new();
        self.path(index, 0, size, &mut proof);
        Ok(proof)
    }

    /// Returns the consistency proof between the trees of the first `old_size` and the
    /// first `new_size` leaves: RFC 6962 §2.1.2 `PROOF(old_size, D[new_size])`.
    ///
    /// The proof is empty when `old_size == 0` or `old_size == new_size`.
    ///
    /// # Errors
    ///
    /// [`ProofError::SizeOutOfRange`] if `new_size` exceeds [`MerkleTree::size`], and
    /// [`ProofError::SizesOutOfOrder`] if `old_size > new_size`.
    pub fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<Vec<Hash>, ProofError> {
        self.check_size(new_size)?;
        if old_size > new_size {
            return Err(ProofError::SizesOutOfOrder { old_size, new_size });
        }
        let mut proof = Vec::new();
        if old_size > 0 && old_size < new_size {
            self.subproof(old_size, 0, new_size, true, &mut proof);
        }
        Ok(proof)
    }

    /// Checks that the tree has at least `size` leaves.
    fn check_size(&self, size: u64) -> Result<(), ProofError> {
        let available = self.size();
        if size > available {
            return Err(ProofError::SizeOutOfRange { size, available });
        }
        Ok(())
    }

    /// Returns the cached roots of the perfect subtrees that decompose `[start, end)`,
    /// largest first. `start` must be a multiple of the largest of them, which holds
    /// for every range met in the RFC 6962 recursion.
    fn perfect_subtrees(&self, start: u64, end: u64) -> Vec<Hash> {
        let mut out = Vec::new();
        let mut pos = start;
        let mut remaining = end - start;
        while remaining > 0 {
            let height = 63 - remaining.leading_zeros() as usize;
            let index = (pos >> height) as usize;
            out.push(self.levels[height][index]);
            pos += 1 << height;
            remaining -= 1 << height;
        }
        out
    }

    /// Returns `MTH(D[start:end])` for a range met in the RFC 6962 recursion.
    fn range_hash(&self, start: u64, end: u64) -> Hash {
        fold_right(self.perfect_subtrees(start, end).iter()).unwrap_or_else(empty_root)
    }

    /// Appends `PATH(m, D[start:end])` (RFC 6962 §2.1.1) to `proof`, with `m` relative
    /// to `start`.
    fn path(&self, m: u64, start: u64, end: u64, proof: &mut Vec<Hash>) {
        let n = end - start;
        if n <= 1 {
            return;
        }
        let k = largest_power_of_two_below(n);
        if m < k {
            self.path(m, start, start + k, proof);
            proof.push(self.range_hash(start + k, end));
        } else {
            self.path(m - k, start + k, end, proof);
            proof.push(self.range_hash(start, start + k));
        }
    }

    /// Appends `SUBPROOF(m, D[start:end], complete)` (RFC 6962 §2.1.2) to `proof`.
    fn subproof(&self, m: u64, start: u64, end: u64, complete: bool, proof: &mut Vec<Hash>) {
        let n = end - start;
        if m == n {
            if !complete {
                proof.push(self.range_hash(start, end));
            }
            return;
        }
        let k = largest_power_of_two_below(n);
        if m <= k {
            self.subproof(m, start, start + k, complete, proof);
            proof.push(self.range_hash(start + k, end));
        } else {
            self.subproof(m - k, start + k, end, false, proof);
            proof.push(self.range_hash(start, start + k));
        }
    }
}

/// Returns the largest power of two strictly below `n`; `n` must be at least 2.
fn largest_power_of_two_below(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// Counts the hashes an RFC 9162 §2.1.3.2 inclusion proof must have, by running the
/// verification loop on the indices alone. Requires `index < size`.
fn inclusion_proof_len(index: u64, size: u64) -> usize {
    let (mut fnode, mut snode) = (index, size - 1);
    let mut len = 0;
    while snode != 0 {
        if fnode & 1 == 0 && fnode == snode {
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        }
        fnode >>= 1;
        snode >>= 1;
        len += 1;
    }
    len
}

/// Verifies that `leaf` is the leaf hash at `index` in the tree of `size` leaves whose
/// root is `root`, given the inclusion proof `proof` (RFC 9162 §2.1.3.2).
///
/// # Errors
///
/// [`ProofError::IndexOutOfRange`] if `index >= size`,
/// [`ProofError::WrongProofLength`] if the proof has the wrong number of hashes for
/// `index` and `size`, and [`ProofError::RootMismatch`] if it does not lead to `root`.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    // Step 1.
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let expected = inclusion_proof_len(index, size);
    if proof.len() != expected {
        return Err(ProofError::WrongProofLength {
            expected,
            got: proof.len(),
        });
    }
    // Steps 2 and 3.
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    // Step 4.
    for p in proof {
        if snode == 0 {
            return Err(ProofError::WrongProofLength {
                expected,
                got: proof.len(),
            });
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    // Step 5.
    if snode != 0 {
        return Err(ProofError::WrongProofLength {
            expected,
            got: proof.len(),
        });
    }
    if r != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Counts the hashes an RFC 9162 §2.1.4.2 consistency proof must have, by running the
/// verification loop on the sizes alone. Requires `0 < old_size < new_size`.
fn consistency_proof_len(old_size: u64, new_size: u64) -> usize {
    let (mut fnode, mut snode) = (old_size - 1, new_size - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    // The first element seeds fr and sr; it is omitted when old_size is a power of two
    // (the verifier then uses old_root instead).
    let mut len = usize::from(!old_size.is_power_of_two());
    while snode != 0 {
        if fnode & 1 == 0 && fnode == snode {
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        }
        fnode >>= 1;
        snode >>= 1;
        len += 1;
    }
    len
}

/// Verifies that the tree of `new_size` leaves with root `new_root` extends the tree of
/// `old_size` leaves with root `old_root`, given the consistency proof `proof`
/// (RFC 9162 §2.1.4.2).
///
/// When `old_size == new_size` the proof must be empty and the roots equal; when
/// `old_size == 0` the proof must be empty and `old_root` must be [`empty_root`].
///
/// # Errors
///
/// [`ProofError::SizesOutOfOrder`] if `old_size > new_size`,
/// [`ProofError::WrongProofLength`] if the proof has the wrong number of hashes for the
/// sizes, and [`ProofError::RootMismatch`] if it does not lead to both roots.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old_size > new_size {
        return Err(ProofError::SizesOutOfOrder { old_size, new_size });
    }
    if old_size == new_size || old_size == 0 {
        if !proof.is_empty() {
            return Err(ProofError::WrongProofLength {
                expected: 0,
                got: proof.len(),
            });
        }
        let consistent = if old_size == 0 {
            *old_root == empty_root()
        } else {
            old_root == new_root
        };
        return if consistent {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }

    // Step 1 (an empty proof is caught here too: the expected length is at least 1).
    let expected = consistency_proof_len(old_size, new_size);
    if proof.len() != expected {
        return Err(ProofError::WrongProofLength {
            expected,
            got: proof.len(),
        });
    }
    // Step 2: if old_size is a power of two, old_root is the implicit first element.
    let mut path = proof.iter();
    let first = if old_size.is_power_of_two() {
        *old_root
    } else {
        match path.next() {
            Some(h) => *h,
            None => {
                return Err(ProofError::WrongProofLength {
                    expected,
                    got: proof.len(),
                });
            }
        }
    };
    // Steps 3 and 4.
    let (mut fnode, mut snode) = (old_size - 1, new_size - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    // Step 5.
    let (mut fr, mut sr) = (first, first);
    // Step 6.
    for c in path {
        if snode == 0 {
            return Err(ProofError::WrongProofLength {
                expected,
                got: proof.len(),
            });
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    // Step 7.
    if snode != 0 {
        return Err(ProofError::WrongProofLength {
            expected,
            got: proof.len(),
        });
    }
    if fr != *old_root || sr != *new_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(
            hex::encode(empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(MerkleTree::new().root(), empty_root());
        assert_eq!(CompactRange::new().root(), empty_root());
    }

    #[test]
    fn compact_range_matches_tree_and_restores() {
        let mut range = CompactRange::new();
        let mut tree = MerkleTree::new();
        for i in 0u64..70 {
            let leaf = leaf_hash(&i.to_be_bytes());
            range.push(leaf);
            tree.push(leaf);
            assert_eq!(range.size(), tree.size());
            assert_eq!(range.root(), tree.root());
            assert_eq!(range.hashes().len(), range.size().count_ones() as usize);
            let restored = CompactRange::from_parts(range.size(), range.hashes().to_vec())
                .expect("restoring a range from its own parts works");
            assert_eq!(restored, range);
            assert_eq!(tree.compact_range_at(range.size()), Ok(range.clone()));
        }
        assert!(matches!(
            CompactRange::from_parts(3, vec![[0; 32]]),
            Err(ProofError::WrongCompactRangeLength {
                expected: 2,
                got: 1,
                ..
            })
        ));
    }

    #[test]
    fn largest_power_of_two_below_is_strict() {
        assert_eq!(largest_power_of_two_below(2), 1);
        assert_eq!(largest_power_of_two_below(3), 2);
        assert_eq!(largest_power_of_two_below(4), 2);
        assert_eq!(largest_power_of_two_below(5), 4);
        assert_eq!(largest_power_of_two_below(u64::MAX), 1 << 63);
    }

    #[test]
    fn errors_are_reported() {
        let tree = MerkleTree::from_leaves((0u8..5).map(|i| leaf_hash(&[i])));
        assert_eq!(
            tree.root_at(6),
            Err(ProofError::SizeOutOfRange {
                size: 6,
                available: 5
            })
        );
        assert_eq!(
            tree.inclusion_proof(5, 5),
            Err(ProofError::IndexOutOfRange { index: 5, size: 5 })
        );
        assert_eq!(
            tree.consistency_proof(4, 3),
            Err(ProofError::SizesOutOfOrder {
                old_size: 4,
                new_size: 3
            })
        );
        assert_eq!(tree.leaf(5), None);
        assert_eq!(tree.leaf(u64::MAX), None);
    }
}
