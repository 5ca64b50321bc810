//! RFC 6962 Merkle tree: published test vectors, a naive reference implementation and
//! property tests.
//!
//! The vectors are the 8-leaf test tree of certificate-transparency and
//! transparency-dev, copied (as data) from
//! `github.com/transparency-dev/merkle`, file `proof/verify_test.go`
//! (variables `leaves`, `roots`, `inclusionProofs`, `consistencyProofs`). In that file
//! the inclusion vectors give 1-based leaf numbers; below they are 0-based indices.

use aws_lc_rs::digest;
use proptest::prelude::*;
use zenvelope_audit::merkle::{
    CompactRange, Hash, MerkleTree, ProofError, empty_root, leaf_hash, node_hash,
    verify_consistency, verify_inclusion,
};

/// The leaf data of the test tree.
const LEAVES: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

/// The roots of the trees of the first 1..=8 leaves.
const ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

/// Inclusion proofs: (0-based leaf index, tree size, proof).
const INCLUSION: &[(u64, u64, &[&str])] = &[
    (0, 1, &[]),
    (
        0,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        &[
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        3,
        &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
    ),
    (
        1,
        5,
        &[
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
];

/// Consistency proofs: (old size, new size, proof).
const CONSISTENCY: &[(u64, u64, &[&str])] = &[
    (1, 1, &[]),
    (
        1,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        &[
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
];

fn h(hex_str: &str) -> Hash {
    let bytes = hex::decode(hex_str).expect("test vector is hex");
    bytes.try_into().expect("test vector is 32 bytes")
}

fn hs(list: &[&str]) -> Vec<Hash> {
    list.iter().map(|s| h(s)).collect()
}

fn leaf_data() -> Vec<Vec<u8>> {
    LEAVES
        .iter()
        .map(|s| hex::decode(s).expect("leaf is hex"))
        .collect()
}

fn test_tree() -> MerkleTree {
    MerkleTree::from_leaves(leaf_data().iter().map(|d| leaf_hash(d)))
}

// ---------------------------------------------------------------------------------
// A deliberately naive reference, written straight from RFC 6962 §2.1 on the leaf
// data, with its own hashing. Quadratic and recursive; used only to cross-check.
// ---------------------------------------------------------------------------------

fn ref_sha256(bytes: &[u8]) -> Hash {
    digest::digest(&digest::SHA256, bytes)
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes")
}

/// The largest power of two strictly less than n (n > 1), found by counting.
fn ref_k(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// MTH(D[n]).
fn ref_mth(d: &[Vec<u8>]) -> Hash {
    match d.len() {
        0 => ref_sha256(b""),
        1 => ref_sha256(&[&[0u8][..], &d[0]].concat()),
        n => {
            let k = ref_k(n);
            let left = ref_mth(&d[..k]);
            let right = ref_mth(&d[k..]);
            ref_sha256(&[&[1u8][..], &left, &right].concat())
        }
    }
}

/// PATH(m, D[n]).
fn ref_path(m: usize, d: &[Vec<u8>]) -> Vec<Hash> {
    let n = d.len();
    if n <= 1 {
        return Vec::new();
    }
    let k = ref_k(n);
    if m < k {
        let mut p = ref_path(m, &d[..k]);
        p.push(ref_mth(&d[k..]));
        p
    } else {
        let mut p = ref_path(m - k, &d[k..]);
        p.push(ref_mth(&d[..k]));
        p
    }
}

/// SUBPROOF(m, D[n], b).
fn ref_subproof(m: usize, d: &[Vec<u8>], b: bool) -> Vec<Hash> {
    let n = d.len();
    if m == n {
        return if b { Vec::new() } else { vec![ref_mth(d)] };
    }
    let k = ref_k(n);
    if m <= k {
        let mut p = ref_subproof(m, &d[..k], b);
        p.push(ref_mth(&d[k..]));
        p
    } else {
        let mut p = ref_subproof(m - k, &d[k..], false);
        p.push(ref_mth(&d[..k]));
        p
    }
}

/// PROOF(m, D[n]), with the RFC 9162 convention that m = 0 gives an empty proof.
fn ref_proof(m: usize, d: &[Vec<u8>]) -> Vec<Hash> {
    if m == 0 {
        return Vec::new();
    }
    ref_subproof(m, d, true)
}

fn data_for(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("entry {i} of the test log").into_bytes())
        .collect()
}

// ---------------------------------------------------------------------------------
// Published vectors.
// ---------------------------------------------------------------------------------

#[test]
fn hashing_primitives() {
    assert_eq!(
        empty_root(),
        h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    );
    // The root of a one-leaf tree is the leaf hash of "".
    assert_eq!(leaf_hash(b""), h(ROOTS[0]));
    // The root of the two-leaf tree is the node hash of the two leaf hashes.
    assert_eq!(node_hash(&leaf_hash(b""), &leaf_hash(&[0])), h(ROOTS[1]));
}

#[test]
fn roots_match_vectors() {
    let data = leaf_data();
    let tree = test_tree();
    assert_eq!(tree.size(), 8);
    assert_eq!(tree.root_at(0), Ok(empty_root()));
    let mut range = CompactRange::new();
    for (i, expected) in ROOTS.iter().enumerate() {
        let size = i as u64 + 1;
        let expected = h(expected);
        assert_eq!(tree.root_at(size), Ok(expected), "root_at({size})");
        assert_eq!(ref_mth(&data[..=i]), expected, "reference MTH of {size}");
        range.push(leaf_hash(&data[i]));
        assert_eq!(range.root(), expected, "compact range of {size}");
        let prefix = MerkleTree::from_leaves(data[..=i].iter().map(|d| leaf_hash(d)));
        assert_eq!(prefix.root(), expected, "tree of {size}");
        assert_eq!(tree.leaf(i as u64), Some(leaf_hash(&data[i])));
    }
    assert_eq!(tree.root(), h(ROOTS[7]));
}

#[test]
fn inclusion_proofs_match_vectors() {
    let data = leaf_data();
    let tree = test_tree();
    for &(index, size, proof) in INCLUSION {
        let expected = hs(proof);
        assert_eq!(
            tree.inclusion_proof(index, size),
            Ok(expected.clone()),
            "inclusion_proof({index}, {size})"
        );
        assert_eq!(ref_path(index as usize, &data[..size as usize]), expected);
        let leaf = leaf_hash(&data[index as usize]);
        let root = h(ROOTS[size as usize - 1]);
        assert_eq!(
            verify_inclusion(&leaf, index, size, &expected, &root),
            Ok(())
        );

        // Corruptions in the style of transparency-dev's `corruptInclusionProof`.
        let wrong_leaf = leaf_hash(b"WrongLeaf");
        assert!(verify_inclusion(&wrong_leaf, index, size, &expected, &root).is_err());
        assert!(verify_inclusion(&leaf, index, size, &expected, &empty_root()).is_err());
        for bad_index in [index.wrapping_sub(1), index + 1, index ^ 2] {
            assert!(verify_inclusion(&leaf, bad_index, size, &expected, &root).is_err());
        }
        for bad_size in [size * 2, size / 2] {
            assert!(verify_inclusion(&leaf, index, bad_size, &expected, &root).is_err());
        }
        let mut longer = expected.clone();
        longer.push(root);
        assert!(verify_inclusion(&leaf, index, size, &longer, &root).is_err());
        let mut prefixed = vec![root];
        prefixed.extend_from_slice(&expected);
        assert!(verify_inclusion(&leaf, index, size, &prefixed, &root).is_err());
        for i in 0..expected.len() {
            let mut bad = expected.clone();
            bad[i][0] ^= 8;
            assert_eq!(
                verify_inclusion(&leaf, index, size, &bad, &root),
                Err(ProofError::RootMismatch)
            );
        }
        if !expected.is_empty() {
            let shorter = &expected[..expected.len() - 1];
            assert!(matches!(
                verify_inclusion(&leaf, index, size, shorter, &root),
                Err(ProofError::WrongProofLength { .. })
            ));
        }
    }
}

#[test]
fn consistency_proofs_match_vectors() {
    let data = leaf_data();
    let tree = test_tree();
    for &(old, new, proof) in CONSISTENCY {
        let expected = hs(proof);
        assert_eq!(
            tree.consistency_proof(old, new),
            Ok(expected.clone()),
            "consistency_proof({old}, {new})"
        );
        assert_eq!(
            ref_proof(old as usize, &data[..new as usize]),
            expected,
            "reference PROOF({old}, D[{new}])"
        );
        let old_root = h(ROOTS[old as usize - 1]);
        let new_root = h(ROOTS[new as usize - 1]);
        assert_eq!(
            verify_consistency(old, new, &old_root, &new_root, &expected),
            Ok(())
        );
        if expected.is_empty() {
            continue;
        }
        // Corruptions in the style of transparency-dev's `corruptConsistencyProof`.
        let wrong = leaf_hash(b"WrongRoot");
        let probes: Vec<(u64, u64, Hash, Hash, Vec<Hash>)> = vec![
            (old - 1, new, old_root, new_root, expected.clone()),
            (old + 1, new, old_root, new_root, expected.clone()),
            (old ^ 2, new, old_root, new_root, expected.clone()),
            (old, new * 2, old_root, new_root, expected.clone()),
            (old, new / 2, old_root, new_root, expected.clone()),
            (old, new, wrong, new_root, expected.clone()),
            (old, new, old_root, wrong, expected.clone()),
            (old, new, new_root, old_root, expected.clone()),
            (old, new, old_root, new_root, Vec::new()),
            (
                old,
                new,
                old_root,
                new_root,
                [&expected[..], &[old_root]].concat(),
            ),
            (
                old,
                new,
                old_root,
                new_root,
                [&expected[..], &[new_root]].concat(),
            ),
            (
                old,
                new,
                old_root,
                new_root,
                [&[old_root], &expected[..]].concat(),
            ),
            (
                old,
                new,
                old_root,
                new_root,
                [&[expected[0]], &expected[..]].concat(),
            ),
            (
                old,
                new,
                old_root,
                new_root,
                expected[..expected.len() - 1].to_vec(),
            ),
        ];
        for (i, (o, n, r1, r2, p)) in probes.into_iter().enumerate() {
            assert!(
                verify_consistency(o, n, &r1, &r2, &p).is_err(),
                "probe {i} of ({old}, {new}) verified"
            );
        }
        for i in 0..expected.len() {
            let mut bad = expected.clone();
            bad[i][0] ^= 16;
            assert!(verify_consistency(old, new, &old_root, &new_root, &bad).is_err());
        }
    }
}

#[test]
fn degenerate_consistency_cases() {
    let root1 = leaf_hash(b"don't care 1");
    let root2 = leaf_hash(b"don't care 2");
    let e = empty_root();
    // Sizes that are always consistent.
    assert_eq!(verify_consistency(0, 0, &e, &e, &[]), Ok(()));
    assert_eq!(verify_consistency(0, 1, &e, &root2, &[]), Ok(()));
    assert_eq!(verify_consistency(1, 1, &root2, &root2, &[]), Ok(()));
    // Stricter than transparency-dev: the root of the empty tree must be right.
    assert_eq!(
        verify_consistency(0, 1, &root1, &root2, &[]),
        Err(ProofError::RootMismatch)
    );
    // Equal sizes with different roots.
    assert_eq!(
        verify_consistency(1, 1, &root1, &root2, &[]),
        Err(ProofError::RootMismatch)
    );
    // Time travel to the past.
    assert_eq!(
        verify_consistency(1, 0, &root1, &root2, &[]),
        Err(ProofError::SizesOutOfOrder {
            old_size: 1,
            new_size: 0
        })
    );
    assert!(verify_consistency(2, 1, &root1, &root2, &[]).is_err());
    // An empty proof between different sizes.
    assert!(matches!(
        verify_consistency(1, 2, &root1, &root2, &[]),
        Err(ProofError::WrongProofLength {
            expected: 1,
            got: 0
        })
    ));
    // Matching roots but a non-empty proof.
    for (a, b) in [(0, 0), (0, 1), (1, 1)] {
        assert!(matches!(
            verify_consistency(a, b, &e, &e, &[e]),
            Err(ProofError::WrongProofLength {
                expected: 0,
                got: 1
            })
        ));
    }
    // Proof generation of the degenerate cases.
    let tree = test_tree();
    for n in 0..=8 {
        assert_eq!(tree.consistency_proof(0, n), Ok(Vec::new()));
        assert_eq!(tree.consistency_proof(n, n), Ok(Vec::new()));
    }
}

#[test]
fn degenerate_inclusion_cases() {
    let some = leaf_hash(b"data");
    // A one-leaf tree: the root is the leaf hash and the proof is empty.
    assert_eq!(verify_inclusion(&some, 0, 1, &[], &some), Ok(()));
    assert_eq!(
        verify_inclusion(&some, 0, 1, &[], &empty_root()),
        Err(ProofError::RootMismatch)
    );
    for (index, size) in [(0, 0), (1, 0), (1, 1), (2, 1)] {
        assert_eq!(
            verify_inclusion(&some, index, size, &[], &empty_root()),
            Err(ProofError::IndexOutOfRange { index, size })
        );
    }
    let tree = test_tree();
    assert_eq!(
        tree.inclusion_proof(0, 0),
        Err(ProofError::IndexOutOfRange { index: 0, size: 0 })
    );
    assert_eq!(
        tree.inclusion_proof(0, 9),
        Err(ProofError::SizeOutOfRange {
            size: 9,
            available: 8
        })
    );
}

#[test]
fn exhaustive_small_trees_match_reference() {
    let data = data_for(40);
    let tree = MerkleTree::from_leaves(data.iter().map(|d| leaf_hash(d)));
    for n in 0..=data.len() {
        let d = &data[..n];
        let root = ref_mth(d);
        assert_eq!(tree.root_at(n as u64), Ok(root), "root of {n}");
        for m in 0..n {
            let proof = ref_path(m, d);
            assert_eq!(tree.inclusion_proof(m as u64, n as u64), Ok(proof.clone()));
            assert_eq!(
                verify_inclusion(&leaf_hash(&d[m]), m as u64, n as u64, &proof, &root),
                Ok(())
            );
        }
        for m in 0..=n {
            let proof = ref_proof(m, d);
            assert_eq!(
                tree.consistency_proof(m as u64, n as u64),
                Ok(proof.clone())
            );
            assert_eq!(
                verify_consistency(m as u64, n as u64, &ref_mth(&data[..m]), &root, &proof),
                Ok(()),
                "consistency {m} -> {n}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------
// Property tests against the reference.
// ---------------------------------------------------------------------------------

/// A tree size `new` ≤ 300, a leaf `index < new`, an `old` size ≤ `new`, a number
/// `total ≥ new` of leaves actually in the tree, and noise to pick a bit to flip.
fn scenario() -> impl Strategy<Value = (usize, usize, usize, usize, u64)> {
    (1usize..=300).prop_flat_map(|new| (Just(new), 0..new, 0..=new, new..=300usize, any::<u64>()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn tree_matches_reference_and_proofs_verify(
        (new, index, old, total, noise) in scenario()
    ) {
        let data = data_for(total);
        let tree = MerkleTree::from_leaves(data.iter().map(|d| leaf_hash(d)));
        let mut range = CompactRange::new();
        for d in &data[..new] {
            range.push(leaf_hash(d));
        }
        let root = ref_mth(&data[..new]);
        let old_root = ref_mth(&data[..old]);
        prop_assert_eq!(tree.root_at(new as u64), Ok(root));
        prop_assert_eq!(range.root(), root);
        prop_assert_eq!(tree.compact_range_at(new as u64), Ok(range));

        // Inclusion.
        let leaf = leaf_hash(&data[index]);
        let (i, n) = (index as u64, new as u64);
        let proof = tree.inclusion_proof(i, n).expect("index < new <= total");
        prop_assert_eq!(&proof, &ref_path(index, &data[..new]));
        prop_assert_eq!(verify_inclusion(&leaf, i, n, &proof, &root), Ok(()));
        if !proof.is_empty() {
            let mut bad = proof.clone();
            let which = (noise % proof.len() as u64) as usize;
            let bit = (noise >> 32) % 256;
            bad[which][(bit / 8) as usize] ^= 1 << (bit % 8);
            prop_assert!(verify_inclusion(&leaf, i, n, &bad, &root).is_err());
            prop_assert!(verify_inclusion(&leaf, i, n, &proof[1..], &root).is_err());
        }
        let mut longer = proof.clone();
        longer.push(root);
        prop_assert!(verify_inclusion(&leaf, i, n, &longer, &root).is_err());
        prop_assert!(verify_inclusion(&leaf_hash(b"other"), i, n, &proof, &root).is_err());
        // Every other index of the same tree, with the same proof, fails.
        for other in 0..n.min(64) {
            if other != i {
                prop_assert!(verify_inclusion(&leaf, other, n, &proof, &root).is_err());
            }
        }
        prop_assert!(verify_inclusion(&leaf, n, n, &proof, &root).is_err());
        // Every other tree size, with that size's real root, fails.
        for other in (index + 1)..=total {
            if other != new {
                let other_root = tree.root_at(other as u64).expect("other <= total");
                prop_assert!(
                    verify_inclusion(&leaf, i, other as u64, &proof, &other_root).is_err(),
                    "size {} accepted a proof for size {}", other, new
                );
            }
        }

        // Consistency.
        let o = old as u64;
        let cproof = tree.consistency_proof(o, n).expect("old <= new <= total");
        prop_assert_eq!(&cproof, &ref_proof(old, &data[..new]));
        prop_assert_eq!(verify_consistency(o, n, &old_root, &root, &cproof), Ok(()));
        if cproof.is_empty() {
            // old == 0 or old == new: only equal (or empty-tree) roots are consistent.
            prop_assert!(old == 0 || old == new);
            prop_assert!(verify_consistency(o, n, &leaf_hash(b"wrong"), &root, &cproof).is_err());
        } else {
            let mut bad = cproof.clone();
            let which = (noise % cproof.len() as u64) as usize;
            let bit = (noise >> 32) % 256;
            bad[which][(bit / 8) as usize] ^= 1 << (bit % 8);
            prop_assert!(verify_consistency(o, n, &old_root, &root, &bad).is_err());
            prop_assert!(verify_consistency(o, n, &old_root, &root, &cproof[1..]).is_err());
            prop_assert!(
                verify_consistency(o, n, &old_root, &root, &cproof[..cproof.len() - 1]).is_err()
            );
            prop_assert!(verify_consistency(o, n, &root, &old_root, &cproof).is_err());
            let wrong = leaf_hash(b"wrong");
            prop_assert!(verify_consistency(o, n, &wrong, &root, &cproof).is_err());
            prop_assert!(verify_consistency(o, n, &old_root, &wrong, &cproof).is_err());
            // Every other old size, with its real root, fails.
            for other in 0..=new {
                if other != old {
                    let other_root = tree.root_at(other as u64).expect("other <= total");
                    prop_assert!(
                        verify_consistency(other as u64, n, &other_root, &root, &cproof).is_err(),
                        "old size {} accepted a proof for old size {}", other, old
                    );
                }
            }
            // Every other new size, with its real root, fails.
            for other in old..=total {
                if other != new {
                    let other_root = tree.root_at(other as u64).expect("other <= total");
                    prop_assert!(
                        verify_consistency(o, other as u64, &old_root, &other_root, &cproof).is_err(),
                        "new size {} accepted a proof for new size {}", other, new
                    );
                }
            }
        }
    }
}
