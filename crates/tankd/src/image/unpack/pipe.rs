//! Decompression on the calling thread, filesystem work on a second one
//! (what `tar -xzf` gets from running gzip as a separate process): the two
//! overlap, linked by a small bounded queue of large chunks whose buffers
//! are recycled.

use std::io::{self, Read};
use std::path::Path;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};

use super::{Counts, UnpackError, Unpacker};

/// Size of one chunk of decompressed data.
const CHUNK: usize = 1 << 20;
/// Chunks in flight between the threads.
const QUEUE: usize = 4;

type Chunk = io::Result<Vec<u8>>;

/// Unpacks the decompressed stream `decoded` into `dest`, decompressing on
/// this thread while another one writes the files. On success the stream
/// was read to its end: the worker only finishes after the feeder hung up.
pub(super) fn unpack_pipelined<D: Read>(decoded: D, dest: &Path) -> Result<Counts, UnpackError> {
    let unpacker = Unpacker::new(dest)?;
    let (data_tx, data_rx) = mpsc::sync_channel::<Chunk>(QUEUE);
    let (free_tx, free_rx) = mpsc::channel::<Vec<u8>>();
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("tank-unpack".into())
            .spawn_scoped(scope, move || {
                unpacker.run(ChannelReader {
                    chunks: data_rx,
                    free: free_tx,
                    current: Vec::new(),
                    pos: 0,
                    done: false,
                })
            });
        let worker = match worker {
            Ok(worker) => worker,
            Err(e) => {
                log::warn!("layer unpack: no worker thread ({e}), unpacking on one thread");
                return Unpacker::new(dest)?.run(decoded);
            }
        };
        feed(decoded, &data_tx, &free_rx);
        drop(data_tx);
        match worker.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Sends the stream in chunks until it ends, fails (the error is sent) or
/// the worker stops listening (it failed; its error is what counts).
fn feed<D: Read>(mut decoded: D, data: &SyncSender<Chunk>, free: &Receiver<Vec<u8>>) {
    loop {
        let mut buf = free
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(CHUNK));
        buf.clear();
        match (&mut decoded).take(CHUNK as u64).read_to_end(&mut buf) {
            Ok(0) => return,
            Ok(_) => {
                if data.send(Ok(buf)).is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = data.send(Err(e));
                return;
            }
        }
    }
}

/// The worker's end of the queue, as a byte stream.
struct ChannelReader {
    chunks: Receiver<Chunk>,
    free: Sender<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
    done: bool,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            let left = &self.current[self.pos..];
            if !left.is_empty() {
                let n = left.len().min(out.len());
                out[..n].copy_from_slice(&left[..n]);
                self.pos += n;
                return Ok(n);
            }
            if self.done || out.is_empty() {
                return Ok(0);
            }
            match self.chunks.recv() {
                Ok(Ok(chunk)) => {
                    let used = std::mem::replace(&mut self.current, chunk);
                    self.pos = 0;
                    if used.capacity() > 0 {
                        let _ = self.free.send(used);
                    }
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                // The feeder sent everything and hung up.
                Err(mpsc::RecvError) => {
                    self.done = true;
                    return Ok(0);
                }
            }
        }
    }
}
