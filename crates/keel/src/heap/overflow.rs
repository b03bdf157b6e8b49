//! Values larger than [`INLINE_MAX`]: chains of overflow pages.
//!
//! A chain is written last chunk first, so each page's `next` link is known
//! when it is written: one `OverflowWrite` record per page, in the
//! transaction (rollback frees the pages again; the transaction's undo
//! stack keeps one entry for the whole chain and no chunk, `Undo::Chain`).
//! The slot then gets the
//! chain's [`OverflowHead`], which carries the value's length, first page,
//! page count and CRC32C; reading checks all of them.

use std::borrow::Cow;

use super::{INLINE_MAX, MAX_VALUE_LEN, Relation, corrupt};
use crate::error::{DbError, Result};
use crate::page::{ChainReader, NO_PAGE, OverflowHead, PageType, TupleFlags, overflow::chunks};
use crate::page::{page_lsn, page_type};
use crate::storage::Storage;
use crate::txn::undo::{Deferred, TxnLog, Undo};
use crate::types::{Lsn, PageId};
use crate::wal::Payload;

impl Storage {
    /// What goes into the slot for `value`: the value itself (borrowed),
    /// or the head of an overflow chain written for it now.
    pub(crate) fn stored_form<'v>(
        &self,
        log: &mut TxnLog,
        rel: &Relation,
        value: &'v [u8],
    ) -> Result<(Cow<'v, [u8]>, TupleFlags)> {
        if value.len() <= INLINE_MAX {
            return Ok((Cow::Borrowed(value), TupleFlags::NONE));
        }
        let head = self.chain_form(log, rel, value)?;
        Ok((
            Cow::Owned(head.encode().to_vec()),
            TupleFlags::OVERFLOW_HEAD,
        ))
    }

    /// The head of an overflow chain written now for `value`, whatever its
    /// length (a tree moves a value out of its leaf when the item would be
    /// too long, which a value shorter than [`INLINE_MAX`] can make it).
    pub(crate) fn chain_form(
        &self,
        log: &mut TxnLog,
        rel: &Relation,
        value: &[u8],
    ) -> Result<OverflowHead> {
        if value.len() > MAX_VALUE_LEN {
            return Err(DbError::ValueTooLarge {
                len: value.len(),
                max: MAX_VALUE_LEN,
            }
            .into());
        }
        self.write_chain(log, rel, value)
    }

    /// Writes `value`'s chain. A write failing part way rolls back the
    /// pages already written (`abandon_chain`).
    fn write_chain(&self, log: &mut TxnLog, rel: &Relation, value: &[u8]) -> Result<OverflowHead> {
        let mut next = NO_PAGE;
        for (written, (index, chunk)) in chunks(value).enumerate().rev().enumerate() {
            let write = Payload::OverflowWrite {
                index: index as u32,
                next,
                chunk: chunk.to_vec(),
            };
            match self.place_whole_page(log, rel, &write) {
                Ok(pid) => next = pid.0,
                Err(e) => {
                    if written > 0 {
                        // The pages written so far, from the newest.
                        let partial = OverflowHead {
                            total_len: 0,
                            first_page: PageId(next),
                            page_count: written as u32,
                            value_crc: 0,
                        };
                        self.abandon_chain(log, rel, partial)?;
                    }
                    return Err(e);
                }
            }
        }
        Ok(OverflowHead::for_value(value, PageId(next))?)
    }

    /// A chain this transaction wrote that nothing stored points at (the
    /// change it was written for failed). When its writes are the newest
    /// entry of the transaction's undo stack (nothing undoable logged since,
    /// so nothing can point at it), they are rolled back at once, each page
    /// freed with a CLR as a rollback frees it: the transaction's own log
    /// then frees the chain, and no crash after its commit can leave the
    /// pages allocated. Otherwise the pages are freed when the transaction
    /// commits (after its commit is durable); a rollback frees them through
    /// its undo stack instead and drops that release with the rest.
    ///
    /// A failure of the rollback is returned (an I/O failure poisons the
    /// database: the transaction cannot commit, and recovery rolls back
    /// what is left, the CLRs logged so far telling it where to resume);
    /// what is left of the chain is then released as one not rolled back
    /// is (`Storage::undo_abandoned_chain`).
    pub(crate) fn abandon_chain(
        &self,
        log: &mut TxnLog,
        rel: &Relation,
        head: OverflowHead,
    ) -> Result<()> {
        let newest = log.undo.last().is_some_and(|e| {
            e.relation == rel.id
                && e.page == head.first_page
                && matches!(e.undo, Undo::Chain { pages, .. } if pages == head.page_count)
        });
        if !newest {
            log.deferred.push(Deferred::FreeChain(rel.id, head));
            return Ok(());
        }
        match log.undo.pop() {
            Some(entry) => self.undo_abandoned_chain(log, rel, entry),
            None => Ok(()),
        }
    }

    /// Decodes a head read from a slot of page `at`, refusing one that
    /// points outside the relation or promises an impossible length.
    pub(crate) fn read_head(
        &self,
        rel: &Relation,
        at: PageId,
        bytes: &[u8],
    ) -> Result<OverflowHead> {
        let head = OverflowHead::decode(bytes, at)?;
        if head.total_len > MAX_VALUE_LEN as u64 || head.first_page.0 >= rel.page_count() {
            return Err(corrupt(
                rel,
                format!("page {at}"),
                format!(
                    "overflow head promises {} bytes from page {} of {}",
                    head.total_len,
                    head.first_page,
                    rel.page_count()
                ),
            ));
        }
        Ok(head)
    }

    /// Reads the value of an overflow chain, one page latch at a time.
    pub(crate) fn read_chain(&self, rel: &Relation, head: OverflowHead) -> Result<Vec<u8>> {
        let mut reader = ChainReader::new(head);
        while let Some(pid) = reader.next_page() {
            if pid.0 >= rel.page_count() {
                return Err(corrupt(
                    rel,
                    format!("overflow chain from page {}", head.first_page),
                    format!("links to page {pid}, past the end of the relation"),
                ));
            }
            let g = self.pool.fetch_read(rel.file(), pid)?;
            reader.push(pid, &g)?;
        }
        Ok(reader.finish()?)
    }

    /// Frees every page of a chain no longer referenced (after the commit
    /// that dropped its last reference is durable; redo-only records), the
    /// last page first, so a crash part way leaves the chain's first pages
    /// linked as they were and the rest free. The walk stops at a page that
    /// is not the chain's next chunk (not an overflow page, or not the
    /// chunk index after the previous page's): what a free that already
    /// ran, in whole or in part, left. With `written_before`, it also stops at a page whose LSN is not
    /// below that LSN: a page changed since then was freed, and maybe taken
    /// again, after the chain lost its reference at that LSN.
    pub(crate) fn free_chain(
        &self,
        rel: &Relation,
        head: OverflowHead,
        written_before: Option<Lsn>,
    ) -> Result<()> {
        let mut pages = Vec::new();
        let mut expected = None;
        let mut next = head.first_page.0;
        while next != NO_PAGE
            && (pages.len() as u64) < u64::from(head.page_count)
            && next < rel.page_count()
        {
            let pid = PageId(next);
            let g = self.pool.fetch_read(rel.file(), pid)?;
            if page_type(&g) != Some(PageType::Overflow)
                || written_before.is_some_and(|b| page_lsn(&g).is_none_or(|l| l >= b))
            {
                break;
            }
            let page = crate::page::OverflowPage::open(&g[..], pid)?;
            // A chain a failed write left part way starts past chunk 0.
            if expected.is_some_and(|i| page.chunk_index() != i) {
                break;
            }
            expected = page.chunk_index().checked_add(1);
            next = page.next_page();
            pages.push(pid);
        }
        for pid in pages.into_iter().rev() {
            let mut g = self.pool.fetch_write(rel.file(), pid)?;
            if page_type(&g) != Some(PageType::Overflow) {
                continue;
            }
            self.change(None, rel.id, &mut g, &Payload::OverflowFree)?;
            rel.fsm.update(
                pid,
                crate::fsm::EMPTY_PAGE_FREE,
                crate::fsm::EMPTY_PAGE_FREE,
            );
        }
        Ok(())
    }
}
