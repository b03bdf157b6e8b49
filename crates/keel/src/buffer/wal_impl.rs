//! [`WalFlusher`] for the real log: the buffer pool's flush request is a
//! [`Wal::flush`], which group-commits with any concurrent committers.

use super::flusher::{WalFlushError, WalFlusher};
use crate::types::Lsn;
use crate::wal::Wal;

impl WalFlusher for Wal {
    fn flush_through(&self, lsn: Lsn) -> Result<(), WalFlushError> {
        self.flush(lsn).map_err(|e| Box::new(e) as WalFlushError)
    }
}
