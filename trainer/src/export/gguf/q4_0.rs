//! ggml's `Q4_0` block: 32 int4 weights with one f16 scale `d` (2 bytes), then 16 bytes whose low
//! nibbles are weights 0–15 and high nibbles weights 16–31, each stored as `q + 8`. That is
//! exactly [`crate::downstream::quant`]'s rounding at group size 32, so a packed matrix reads back
//! to the fake-quantized one bit for bit.

use half::f16;

use crate::downstream::quant::quantize_group;

/// Weights per block.
pub const BLOCK: usize = 32;
/// Bytes per block: the f16 scale and 16 bytes of nibbles.
pub const BLOCK_BYTES: usize = 18;

/// Packs rows whose length is a multiple of [`BLOCK`] into blocks.
pub fn pack(rows: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.len() / BLOCK * BLOCK_BYTES);
    for block in rows.chunks(BLOCK) {
        let group = quantize_group(block);
        out.extend_from_slice(&group.scale.to_le_bytes());
        let stored: Vec<u8> = group.values.iter().map(|&q| (q + 8) as u8).collect();
        out.extend((0..BLOCK / 2).map(|j| stored[j] | (stored[j + BLOCK / 2] << 4)));
    }
    out
}

/// Reads blocks back to values.
pub fn unpack(bytes: &[u8]) -> Vec<f32> {
    let mut out = Vec::with_capacity(bytes.len() / BLOCK_BYTES * BLOCK);
    for block in bytes.chunks(BLOCK_BYTES) {
        let d = f16::from_le_bytes([block[0], block[1]]).to_f32();
        let qs = &block[2..];
        let value = |nibble: u8| f32::from(nibble as i8 - 8) * d;
        out.extend(qs.iter().map(|b| value(b & 0x0f)));
        out.extend(qs.iter().map(|b| value(b >> 4)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_hold_the_scale_then_low_and_high_nibbles() {
        let _rng = crate::test_rng::lock();
        let values: Vec<f32> = (0..32).map(|i| (i as f32 - 16.0) / 2.0).collect();
        let packed = pack(&values);
        assert_eq!(packed.len(), BLOCK_BYTES);
        // The extreme is −8 → q = −8, stored 0; d = −8 / −8 = 1.
        assert_eq!(f16::from_le_bytes([packed[0], packed[1]]).to_f32(), 1.0);
        // Weight 0 (−8 → stored 0) in the low nibble, weight 16 (0 → stored 8) in the high one.
        assert_eq!(packed[2], 0x80);
        assert_eq!(
            unpack(&packed),
            crate::downstream::quant::fake_quantize_rows(&values, 32)
        );
    }
}
