//! Large images of incompressible pseudo-random data for pull throughput benchmarks.

use anyhow::{Result, ensure};

use super::{BuiltImage, Compression, ImageBuilder, LayerBuilder, layer::layer_from_tar};

/// Fills `buf` from a xorshift64* stream seeded with `seed` (fast, not cryptographic).
fn fill(buf: &mut [u8], seed: u64) {
    let mut s = seed | 1;
    for chunk in buf.chunks_mut(8) {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        let v = s.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

/// A `layers`-layer image whose layers together hold `total_bytes` of random data
/// (uncompressed layers; each layer is one file `/data/layer-<i>.bin`).
pub fn big_image(total_bytes: u64, layers: usize) -> Result<BuiltImage> {
    big_image_seeded(total_bytes, layers, 0x6875_736b)
}

/// [`big_image`] with a chosen seed, so two calls can produce different digests.
pub fn big_image_seeded(total_bytes: u64, layers: usize, seed: u64) -> Result<BuiltImage> {
    ensure!(layers > 0, "big_image needs at least one layer");
    let per = total_bytes / layers as u64;
    let mut img = ImageBuilder::new().cmd(&["/bin/true"]);
    for i in 0..layers {
        let size = if i + 1 == layers {
            total_bytes - per * (layers as u64 - 1)
        } else {
            per
        };
        let mut data = vec![0u8; usize::try_from(size)?];
        fill(
            &mut data,
            seed.wrapping_add(i as u64)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        let tar = LayerBuilder::new()
            .file(&format!("/data/layer-{i}.bin"), data, 0o644, 0, 0)
            .tar();
        img = img.layer(layer_from_tar(tar, Compression::None));
    }
    Ok(img.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_image_is_incompressible_and_sized() -> Result<()> {
        let img = big_image(4 << 20, 3)?;
        assert_eq!(img.layers.len(), 3);
        let total: u64 = img.layers.iter().map(|l| l.size()).sum();
        assert!((4 << 20..(4 << 20) + 16 * 1024).contains(&total));
        let z = zstd::encode_all(&img.layers[0].blob[..], 3)?;
        assert!(z.len() as u64 > img.layers[0].size() * 99 / 100);
        assert_ne!(img.layers[0].digest, img.layers[1].digest);
        Ok(())
    }
}
