//! RFC 6962 Merkle trees over intent ids, inclusion verified per RFC 9162 §2.1.3.2
//! (docs/protocol.md §7). No duplication of odd nodes; the leaf count is
//! committed beside the root because a path alone does not fix the tree size.
use crate::hash::sha256;

pub fn leaf_hash(data: &[u8]) -> [u8; 32] {
    sha256(&[&[0x00], data])
}

pub fn node_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    sha256(&[&[0x01], left, right])
}

/// Largest power of two strictly below `n` (n >= 2).
fn split_point(n: usize) -> usize {
    let mut k = 1usize;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// MTH(D): the root over `leaves` in order; `H("")` for no leaves.
/// Recursion depth is log2(n); nothing is allocated.
pub fn root<T: AsRef<[u8]>>(leaves: &[T]) -> [u8; 32] {
    match leaves.len() {
        0 => sha256(&[]),
        1 => leaf_hash(leaves[0].as_ref()),
        n => {
            let k = split_point(n);
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// RFC 9162 §2.1.3.2: does `path` prove `leaf` sits at `index` of a tree of
/// `size` leaves with `root`? Wrong sizes, short or long paths are all `false`.
pub fn verify_inclusion(leaf: &[u8], index: u64, size: u64, path: &[[u8; 32]], root: &[u8; 32]) -> bool {
    if index >= size {
        return false;
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = leaf_hash(leaf);
    for p in path {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && &r == root
}

/// RFC 6962 audit path of leaf `index` (leaf sibling first), for receipts
/// and tests; `None` when `index` is out of range.
pub fn inclusion_path<T: AsRef<[u8]>>(leaves: &[T], index: usize) -> Option<alloc::vec::Vec<[u8; 32]>> {
    if index >= leaves.len() {
        return None;
    }
    let mut path = alloc::vec::Vec::new();
    collect_path(leaves, index, &mut path);
    Some(path)
}

fn collect_path<T: AsRef<[u8]>>(leaves: &[T], index: usize, path: &mut alloc::vec::Vec<[u8; 32]>) {
    let n = leaves.len();
    if n <= 1 {
        return;
    }
    let k = split_point(n);
    if index < k {
        collect_path(&leaves[..k], index, path);
        path.push(root(&leaves[k..]));
    } else {
        collect_path(&leaves[k..], index - k, path);
        path.push(root(&leaves[..k]));
    }
}
