//! Large objects in bounded memory: uploading a backup file in parts and
//! reading an object back part by part with its CRC32C.
//!
//! ## Uploads ([`Remote::put_streamed`])
//!
//! A file no larger than one part goes up as one create-only put
//! ([`Remote::put_create`]). A larger one goes up as a multipart upload,
//! one part at a time: at most one part is in memory, read from the
//! source just before it is sent. Multipart uploads cannot be create-only
//! on every store (S3's `CompleteMultipartUpload` takes no
//! `If-None-Match` on every server, and a local directory renames over
//! the name), so their safety rests on the name, not the store:
//!
//! 1. A streamed object's name lies under a folder unique to one run of a
//!    backup (its start LSN and a random backup id, `backup` module), so
//!    no other writer ever uploads to it, and a retried upload replaces
//!    only its own unfinished bytes.
//! 2. The manifest, uploaded create-only after every file, is the commit
//!    point; it records each file's size and CRC32C as read from the data
//!    directory.
//! 3. A reader trusts only files a manifest names, and checks each one's
//!    size and CRC32C ([`Remote::crc_streamed`]) before using it.
//!
//! A failed multipart upload is aborted (best effort: a store that keeps
//! the parts of an upload never completed, after a kill or a power cut,
//! still shows no object under the name; S3 buckets want a lifecycle rule
//! that removes such parts). A backup folder without a manifest is left
//! in place, never deleted on a guess; `keel archive verify` lists it as
//! incomplete.
//!
//! ## Reads ([`Remote::crc_streamed`], [`Remote::read_streamed`])
//!
//! The object is read as the store streams it; each piece is added to the
//! CRC32C and handed on (to a restore's file) or dropped, so verifying or
//! downloading a file of any size needs one piece in memory.

use futures::TryStreamExt;
use keel::checksum::crc32c_append;
use object_store::path::Path;
use object_store::{PutMultipartOptions, PutPayload};

use crate::error::Result;
use crate::store::{Put, Remote};

/// Part size of streamed uploads. S3 needs parts of at least 5 MiB (but
/// the last); larger parts mean fewer requests and more memory: one part
/// is held at a time.
pub const DEFAULT_PART_SIZE_BYTES: usize = 8 << 20;

/// The size and CRC32C of an object, as streamed back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamedSum {
    /// Bytes read.
    pub size: u64,
    /// CRC32C of them.
    pub crc32c: u32,
}

impl Remote {
    /// Uploads `size` bytes that `next_part` yields (each call: the next
    /// at most `part_size_bytes`, `None` at the end) to `path` (module
    /// essay): one create-only put when they fit one part, else a
    /// multipart upload holding one part at a time. `path` must lie under
    /// a folder no other writer uses (rule 1).
    pub fn put_streamed<E>(
        &self,
        path: &Path,
        size: u64,
        part_size_bytes: usize,
        mut next_part: impl FnMut(usize) -> std::result::Result<Option<Vec<u8>>, E>,
    ) -> std::result::Result<Put, E>
    where
        E: From<crate::error::ArchiveError>,
    {
        if size <= part_size_bytes as u64 {
            let mut bytes = Vec::with_capacity(size as usize);
            while let Some(part) = next_part(part_size_bytes)? {
                bytes.extend_from_slice(&part);
            }
            return Ok(self.put_create(path, &bytes)?);
        }
        let start = self
            .store()
            .put_multipart_opts(path, PutMultipartOptions::default());
        let mut upload = self.block("put", path, start)?;
        let mut sent = || -> std::result::Result<(), E> {
            while let Some(part) = next_part(part_size_bytes)? {
                self.block("put", path, upload.put_part(PutPayload::from(part)))?;
            }
            self.block("put", path, upload.complete())?;
            Ok(())
        };
        match sent() {
            Ok(()) => Ok(Put::Created),
            Err(e) => {
                let _ = self.block("put", path, upload.abort());
                Err(e)
            }
        }
    }

    /// The size and CRC32C of the object at `path`, read as a stream
    /// (module essay).
    pub fn crc_streamed(&self, path: &Path) -> Result<StreamedSum> {
        self.read_streamed(path, |_| Ok(()))
    }

    /// Reads the object at `path` as a stream, handing each piece to
    /// `sink` as it arrives (one piece in memory at a time), and returns
    /// its size and CRC32C.
    pub fn read_streamed(
        &self,
        path: &Path,
        mut sink: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<StreamedSum> {
        let get = self.store().get(path);
        let mut stream = self.block("get", path, get)?.into_stream();
        let mut sum = StreamedSum { size: 0, crc32c: 0 };
        while let Some(piece) = self.block("get", path, stream.try_next())? {
            sum.size += piece.len() as u64;
            sum.crc32c = crc32c_append(sum.crc32c, &piece);
            sink(&piece)?;
        }
        Ok(sum)
    }
}
