//! Compression of response bodies: gzip, the one content coding every HTTP client
//! accepts (Python's `requests`, which unchanged ISEK nodes use, sends
//! `Accept-Encoding: gzip, deflate` on every request).
//!
//! Level 0 (pure): bytes in, bytes out. Which requests get compressed bytes, and the
//! headers that say so, are decided in `http`; compressing once per listing and
//! sharing the result is the snapshot cache's job.

use std::io::Write as _;

use flate2::Compression;
use flate2::write::GzEncoder;

/// The level used: the fastest. Listings are JSON with long repeated keys, so level 1
/// already shrinks them several times over, at a fraction of the default level's CPU.
const LEVEL: u32 = 1;

/// `body` as a gzip member (RFC 1952). Writing into memory does not fail; should the
/// encoder ever report an error, the caller sends the body uncompressed.
pub fn gzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    // The capacity guess avoids most regrowth: listings shrink about tenfold.
    let mut encoder = GzEncoder::new(
        Vec::with_capacity(body.len() / 8 + 64),
        Compression::new(LEVEL),
    );
    encoder.write_all(body)?;
    encoder.finish()
}

/// The concatenation of `chunks` as one gzip member, compressed as they come: the
/// uncompressed body is never held whole.
pub fn gzip_chunks(chunks: impl Iterator<Item = impl AsRef<[u8]>>) -> std::io::Result<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::new(LEVEL));
    for chunk in chunks {
        encoder.write_all(chunk.as_ref())?;
    }
    encoder.finish()
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    #[test]
    fn gzip_round_trips_and_shrinks_a_listing() {
        let body = "{\"host\":\"127.0.0.1\",\"metadata\":{}}".repeat(1000);
        let packed = gzip(body.as_bytes()).unwrap();
        assert!(packed.len() * 10 < body.len(), "{} bytes", packed.len());
        let mut unpacked = String::new();
        flate2::read::GzDecoder::new(&packed[..])
            .read_to_string(&mut unpacked)
            .unwrap();
        assert_eq!(unpacked, body);
        let pieces = gzip_chunks(body.as_bytes().chunks(1000)).unwrap();
        let mut unpacked = String::new();
        flate2::read::GzDecoder::new(&pieces[..])
            .read_to_string(&mut unpacked)
            .unwrap();
        assert_eq!(unpacked, body);
    }
}
