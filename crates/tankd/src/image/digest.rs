//! Content digests (`sha256:<hex>`): parsing that guarantees a digest is
//! safe to use as a file name, hashing (also of a stream as it is read),
//! and layer chain ids.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::error::ImageError;

/// A validated `sha256:<64 lowercase hex>` digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest(String);

impl Digest {
    pub fn parse(text: &str) -> Result<Digest, ImageError> {
        let hex = text
            .strip_prefix("sha256:")
            .ok_or_else(|| ImageError::InvalidDigest(text.to_owned()))?;
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(ImageError::InvalidDigest(text.to_owned()));
        }
        Ok(Digest(text.to_owned()))
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest::from_hasher(Sha256::new_with_prefix(bytes))
    }

    pub fn from_hasher(hasher: Sha256) -> Digest {
        Digest(format!("sha256:{}", hex::encode(hasher.finalize())))
    }

    /// The 64 hex digits (a safe file name).
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The digests whose hex form names an entry of `dir` (a content or
    /// layer store); other names are ignored.
    pub fn named_in(dir: &std::path::Path) -> Result<Vec<Digest>, ImageError> {
        let entries = std::fs::read_dir(dir).map_err(|e| ImageError::io(dir, e))?;
        Ok(entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                Digest::parse(&format!("sha256:{}", e.file_name().to_string_lossy())).ok()
            })
            .collect())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Digest {
    type Error = ImageError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Digest::parse(&value)
    }
}

impl From<Digest> for String {
    fn from(value: Digest) -> Self {
        value.0
    }
}

/// A reader that hashes every byte read through it, in the caller's buffer
/// (no copy). [`DigestReader::finish`] gives the digest only if the stream
/// was read to its end, so a digest never describes a prefix.
pub struct DigestReader<R> {
    inner: R,
    hasher: Sha256,
    eof: bool,
}

impl<R> DigestReader<R> {
    pub fn new(inner: R) -> DigestReader<R> {
        DigestReader {
            inner,
            hasher: Sha256::new(),
            eof: false,
        }
    }

    /// The digest of the whole stream; `None` if its end was not reached.
    pub fn finish(self) -> Option<Digest> {
        self.eof.then(|| Digest::from_hasher(self.hasher))
    }
}

impl<R: std::io::Read> std::io::Read for DigestReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.eof = true;
        }
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// OCI chain ids of a layer stack (bottom first): `chain[0] = diff[0]`,
/// `chain[n] = sha256(chain[n-1] + " " + diff[n])`.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut chain: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for diff in diff_ids {
        let next = match chain.last() {
            None => diff.clone(),
            Some(parent) => Digest::of(format!("{parent} {diff}").as_bytes()),
        };
        chain.push(next);
    }
    chain
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4";
    const B: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_only_sha256_hex() {
        assert_eq!(Digest::parse(A).unwrap().hex().len(), 64);
        for bad in [
            "sha256:../../etc/passwd",
            "sha512:abc",
            "sha256:A3ED95CAEB02FFE68CDD9FD84406680AE93D633CB16422D00E8A7C22955B46D4",
            "sha256:abc",
            "",
        ] {
            assert!(Digest::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hashes() {
        assert_eq!(Digest::of(b"").as_str(), B);
    }

    #[test]
    fn digest_reader_hashes_the_whole_stream_only() {
        use std::io::Read;
        let data = b"some layer bytes".repeat(1000);
        let mut reader = DigestReader::new(&data[..]);
        let mut first = [0u8; 100];
        reader.read_exact(&mut first).unwrap();
        assert_eq!(reader.finish(), None, "a prefix has no digest");

        let mut reader = DigestReader::new(&data[..]);
        std::io::copy(&mut reader, &mut std::io::sink()).unwrap();
        assert_eq!(reader.finish(), Some(Digest::of(&data)));
    }

    #[test]
    fn chain_ids_follow_the_oci_rule() {
        let a = Digest::parse(A).unwrap();
        let b = Digest::parse(B).unwrap();
        let chain = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(chain[0], a);
        assert_eq!(chain[1], Digest::of(format!("{A} {B}").as_bytes()));
        assert!(chain_ids(&[]).is_empty());
    }
}
