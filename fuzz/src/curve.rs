//! The P-256 group order and ECDSA's built-in malleability.
//!
//! For any valid signature `(r, s)`, `(r, n - s)` verifies too (isek keeps high-`s`
//! signatures, as python-ecdsa does). A fuzzer that finds it has found mathematics,
//! not a bug, so the oracles accept it explicitly.

/// The order `n` of the P-256 base point, big-endian.
pub const ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// `n - s` for `0 < s < n` (big-endian, 32 bytes); `None` outside that range.
pub fn negate_scalar(s: &[u8; 32]) -> Option<[u8; 32]> {
    if s.iter().all(|b| *b == 0) || s.as_slice() >= ORDER.as_slice() {
        return None;
    }
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut d = i16::from(ORDER[i]) - i16::from(s[i]) - borrow;
        borrow = if d < 0 {
            d += 256;
            1
        } else {
            0
        };
        out[i] = d as u8;
    }
    Some(out)
}

/// The same signature with `s` negated: `r || (n - s)`, when `s` is in range.
pub fn malleated(signature: &[u8; 64]) -> Option<[u8; 64]> {
    let mut s = [0u8; 32];
    s.copy_from_slice(&signature[32..]);
    let negated = negate_scalar(&s)?;
    let mut out = *signature;
    out[32..].copy_from_slice(&negated);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negation_is_an_involution_and_sums_to_the_order() {
        let mut one = [0u8; 32];
        one[31] = 1;
        let mut n_minus_one = ORDER;
        n_minus_one[31] -= 1;
        assert_eq!(negate_scalar(&one), Some(n_minus_one));
        assert_eq!(negate_scalar(&n_minus_one), Some(one));
        assert_eq!(negate_scalar(&[0u8; 32]), None);
        assert_eq!(negate_scalar(&ORDER), None);
    }
}
