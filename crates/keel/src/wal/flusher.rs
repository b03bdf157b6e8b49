//! The buffer pool's WAL-before-data hook (invariant 4): a page is written
//! only after the log is durable up to that page's LSN. The pool asks
//! through [`WalFlusher`], a small trait defined in buffer/ and implemented
//! here by [`Wal`]: the request is a [`Wal::flush`], which waits for
//! durability like a commit and shares its sync with every concurrent
//! committer (group commit).

use crate::buffer::{WalFlushError, WalFlusher};
use crate::types::Lsn;
use crate::wal::Wal;

impl WalFlusher for Wal {
    fn flush_through(&self, lsn: Lsn) -> Result<(), WalFlushError> {
        self.flush(lsn).map_err(|e| Box::new(e) as WalFlushError)
    }
}
