//! A bounded byte ring: the most recent output of a PTY drained while no
//! client was attached. Writing never fails and never grows past the
//! capacity: the oldest bytes go first.

use std::collections::VecDeque;

#[derive(Debug)]
pub struct Ring {
    bytes: VecDeque<u8>,
    capacity: usize,
    /// Bytes dropped since the ring was last taken.
    dropped: u64,
}

impl Ring {
    pub fn new(capacity: usize) -> Ring {
        Ring {
            bytes: VecDeque::with_capacity(capacity.min(4096)),
            capacity,
            dropped: 0,
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        if self.capacity == 0 {
            self.dropped += data.len() as u64;
            return;
        }
        let data = if data.len() > self.capacity {
            self.dropped += (data.len() - self.capacity) as u64;
            &data[data.len() - self.capacity..]
        } else {
            data
        };
        let overflow = (self.bytes.len() + data.len()).saturating_sub(self.capacity);
        self.bytes.drain(..overflow);
        self.dropped += overflow as u64;
        self.bytes.extend(data);
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Bytes lost to the bound since the last [`Ring::take`].
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Empties the ring: its content, oldest first. When bytes were
    /// dropped, the content starts after the first newline (a whole line,
    /// not the tail of a cut one), if there is one.
    pub fn take(&mut self) -> Vec<u8> {
        let mut out: Vec<u8> = self.bytes.drain(..).collect();
        if self.dropped > 0 {
            if let Some(i) = out.iter().position(|b| *b == b'\n') {
                out.drain(..=i);
            }
        }
        self.dropped = 0;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_bytes() {
        let mut ring = Ring::new(8);
        ring.push(b"abc");
        ring.push(b"def");
        assert_eq!(ring.len(), 6);
        ring.push(b"ghij");
        assert_eq!(ring.len(), 8);
        assert_eq!(ring.dropped(), 2);
        assert_eq!(ring.take(), b"cdefghij".to_vec());
        assert!(ring.is_empty());
        assert_eq!(ring.dropped(), 0);
    }

    #[test]
    fn a_write_larger_than_the_ring() {
        let mut ring = Ring::new(4);
        ring.push(b"0123456789");
        assert_eq!(ring.dropped(), 6);
        assert_eq!(ring.take(), b"6789".to_vec());
    }

    #[test]
    fn after_a_loss_the_content_starts_at_a_line() {
        let mut ring = Ring::new(10);
        ring.push(b"first line\nsecond\nthird");
        assert_eq!(ring.take(), b"third".to_vec());
        ring.push(b"a\nb");
        // Nothing lost: as is.
        assert_eq!(ring.take(), b"a\nb".to_vec());
        let mut zero = Ring::new(0);
        zero.push(b"x");
        assert!(zero.is_empty());
    }
}
