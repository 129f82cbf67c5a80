//! A streaming zstd reader over every frame of a stream.
//!
//! `ruzstd::decoding::StreamingDecoder` decodes exactly one frame, but a
//! zstd stream may hold several (zstd:chunked layers, concatenated
//! compressor output) and skippable frames. This reader decodes frame after
//! frame until the input ends, skips skippable frames and checks each
//! frame's content checksum when it has one. Memory stays at one window
//! plus what one `read` asks for, whatever the compression ratio.

use std::io::{self, BufRead, Read};

use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};

/// Decompresses a zstd stream of one or more frames.
pub(super) struct ZstdReader<R: BufRead> {
    source: R,
    decoder: FrameDecoder,
    in_frame: bool,
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("zstd: {e}"))
}

impl<R: BufRead> ZstdReader<R> {
    pub(super) fn new(source: R) -> Self {
        ZstdReader {
            source,
            decoder: FrameDecoder::new(),
            in_frame: false,
        }
    }

    /// Reads the next frame header, skipping skippable frames. Returns false
    /// at the end of the input.
    fn next_frame(&mut self) -> io::Result<bool> {
        loop {
            if self.source.fill_buf()?.is_empty() {
                return Ok(false);
            }
            match self.decoder.reset(&mut self.source) {
                Ok(()) => return Ok(true),
                Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame {
                    length,
                    ..
                })) => {
                    let skipped =
                        io::copy(&mut (&mut self.source).take(length.into()), &mut io::sink())?;
                    if skipped != u64::from(length) {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "zstd: truncated skippable frame",
                        ));
                    }
                }
                Err(e) => return Err(invalid(e)),
            }
        }
    }
}

impl<R: BufRead> Read for ZstdReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if !self.in_frame {
                if !self.next_frame()? {
                    return Ok(0);
                }
                self.in_frame = true;
            }
            // Decode until enough is collectable (the decoder keeps one window
            // back while the frame is unfinished) or the frame ends.
            while self.decoder.can_collect() < buf.len() && !self.decoder.is_finished() {
                let wanted = buf.len() - self.decoder.can_collect();
                self.decoder
                    .decode_blocks(&mut self.source, BlockDecodingStrategy::UptoBytes(wanted))
                    .map_err(invalid)?;
            }
            let n = self.decoder.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            if !self.decoder.is_finished() {
                // Defensive: an unfinished frame that yields nothing would
                // otherwise spin here.
                return Err(invalid("decoder made no progress"));
            }
            // The frame is finished and drained: check it, then go on to the
            // next frame (or the end of the input).
            if let Some(expected) = self.decoder.get_checksum_from_data() {
                if self.decoder.get_calculated_checksum() != Some(expected) {
                    return Err(invalid("frame content checksum mismatch"));
                }
            }
            self.in_frame = false;
        }
    }
}
