//! A fault-injecting `ObjectStore`: wraps any store and makes chosen
//! requests fail in the ways real object stores and networks fail, so the
//! archiver's retry and split-brain rules are tested against each shape.
//!
//! Each fault is named by what the caller sees and what the store did:
//!
//! | fault            | the store                      | the caller sees |
//! |------------------|--------------------------------|-----------------|
//! | [`Fault::Error`] | nothing                        | an error at once |
//! | [`Fault::Hang`]  | nothing                        | no answer for a while, then an error (a timeout when its limit is shorter) |
//! | [`Fault::LostReply`] | performs the request       | an error: a success reported as a failure |
//! | [`Fault::Slow`]  | performs the request, late     | success, after a delay |
//! | [`Fault::Lost`]  | nothing                        | success (an upload or delete acknowledged and lost); an error for other kinds |
//!
//! Faults are scripted per operation kind ([`FaultStore::inject`]: the
//! next request of that kind gets the fault, in order), or the store is
//! "down" ([`FaultStore::set_down`]: every request fails until it is up
//! again). Requests are counted, so a test can say how many tries a
//! scenario took.
//!
//! A **power cut** of the writer ([`FaultStore::power_cut_after`]): after
//! the given number of further writes (uploads and deletes), every request through this
//! wrapper fails, as if the writing process had lost power: an object
//! whose upload had not finished (a multipart upload not yet completed)
//! is never completed, so the store shows nothing under its name, and
//! nothing is cleaned up (`abort` fails too). Each part of a multipart
//! upload and its completion count as uploads ([`Op::Put`]), so a cut
//! can land between any two parts.
//!
//! An **outage** ([`FaultStore::outage_after`]): after the given number of
//! further requests of any kind, every request fails, so a reader (a
//! restore, a verify) can be cut off at each of its downloads and
//! listings in turn.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use object_store::path::Path;
use object_store::{
    GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use parking_lot::Mutex;

/// One injected fault (module table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Fails at once; the store is not touched.
    Error,
    /// Answers nothing for the duration, then fails; the store is not
    /// touched.
    Hang(Duration),
    /// The store performs the request; the caller is told it failed.
    LostReply,
    /// The store performs the request after the delay.
    Slow(Duration),
    /// An upload (a single put) or a delete is acknowledged and not done:
    /// a store that loses an object it said it kept (a bucket rule, a
    /// store's own fault). Requests of other kinds, where success cannot
    /// be faked, fail as with [`Fault::Error`].
    Lost,
}

/// The kinds of request faults are scripted for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// Uploads.
    Put,
    /// Downloads.
    Get,
    /// Listings.
    List,
    /// Deletes.
    Delete,
}

/// Requests seen and faults injected so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// Upload requests.
    pub puts: u64,
    /// Download requests.
    pub gets: u64,
    /// Listing requests.
    pub lists: u64,
    /// Delete requests.
    pub deletes: u64,
    /// Faults injected (scripted or because the store was down).
    pub injected: u64,
}

#[derive(Debug, Default)]
struct Plan {
    script: VecDeque<(Op, Fault)>,
    down: bool,
    /// Uploads left before a power cut takes the store down for good.
    cut_after: Option<u64>,
    /// Requests of any kind left before an outage takes the store down.
    outage_after: Option<u64>,
    stats: FaultStats,
}

/// The fault-injecting wrapper (module essay).
#[derive(Debug, Clone)]
pub struct FaultStore {
    inner: Arc<dyn ObjectStore>,
    plan: Arc<Mutex<Plan>>,
}

impl fmt::Display for FaultStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultStore({})", self.inner)
    }
}

impl FaultStore {
    /// Wraps `inner`, injecting nothing until told.
    pub fn new(inner: Arc<dyn ObjectStore>) -> FaultStore {
        FaultStore {
            inner,
            plan: Arc::default(),
        }
    }

    /// The next request of kind `op` (after those already scripted) gets
    /// `fault`.
    pub fn inject(&self, op: Op, fault: Fault) {
        self.plan.lock().script.push_back((op, fault));
    }

    /// Takes the store down (every request fails at once) or up again.
    pub fn set_down(&self, down: bool) {
        self.plan.lock().down = down;
    }

    /// A power cut (module essay) after `puts` more writes: the next
    /// `puts` uploads (single puts, multipart starts, parts and
    /// completions) and deletes go through, and from then on every
    /// request fails.
    pub fn power_cut_after(&self, puts: u64) {
        let mut plan = self.plan.lock();
        plan.cut_after = Some(puts);
        plan.down |= puts == 0;
    }

    /// An outage (module essay) after `requests` more requests of any
    /// kind: those go through, and from then on every request fails.
    pub fn outage_after(&self, requests: u64) {
        let mut plan = self.plan.lock();
        plan.outage_after = Some(requests);
        plan.down |= requests == 0;
    }

    /// Requests seen and faults injected.
    pub fn stats(&self) -> FaultStats {
        self.plan.lock().stats
    }

    /// Counts a request of kind `op` and picks its fault, if any.
    fn next_fault(&self, op: Op) -> Option<Fault> {
        let mut plan = self.plan.lock();
        match op {
            Op::Put => plan.stats.puts += 1,
            Op::Get => plan.stats.gets += 1,
            Op::List => plan.stats.lists += 1,
            Op::Delete => plan.stats.deletes += 1,
        }
        if !plan.down {
            match plan.outage_after {
                Some(0) => plan.down = true,
                Some(n) => plan.outage_after = Some(n - 1),
                None => {}
            }
        }
        if matches!(op, Op::Put | Op::Delete) && !plan.down {
            match plan.cut_after {
                Some(0) => plan.down = true,
                Some(n) => plan.cut_after = Some(n - 1),
                None => {}
            }
        }
        let fault = match plan.down {
            true => Some(Fault::Error),
            false => {
                let i = plan.script.iter().position(|(o, _)| *o == op);
                i.and_then(|i| plan.script.remove(i)).map(|(_, f)| f)
            }
        };
        if fault.is_some() {
            plan.stats.injected += 1;
        }
        fault
    }

    /// Runs `request` under the fault chosen for `op`.
    async fn apply<T>(
        &self,
        op: Op,
        request: impl std::future::Future<Output = object_store::Result<T>>,
    ) -> object_store::Result<T> {
        self.run(self.next_fault(op), request).await
    }

    /// Runs `request` under `fault`.
    async fn run<T>(
        &self,
        fault: Option<Fault>,
        request: impl std::future::Future<Output = object_store::Result<T>>,
    ) -> object_store::Result<T> {
        match fault {
            None => request.await,
            Some(Fault::Error) => Err(injected("request refused")),
            Some(Fault::Lost) => Err(injected("request lost")),
            Some(Fault::Hang(d)) => {
                tokio::time::sleep(d).await;
                Err(injected("no answer"))
            }
            Some(Fault::LostReply) => {
                request.await?;
                Err(injected("reply lost after the request succeeded"))
            }
            Some(Fault::Slow(d)) => {
                tokio::time::sleep(d).await;
                request.await
            }
        }
    }
}

fn injected(what: &str) -> object_store::Error {
    object_store::Error::Generic {
        store: "FaultStore",
        source: format!("injected fault: {what}").into(),
    }
}

#[async_trait::async_trait]
impl ObjectStore for FaultStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let put = self.inner.put_opts(location, payload, opts);
        match self.next_fault(Op::Put) {
            Some(Fault::Lost) => Ok(PutResult {
                e_tag: None,
                version: None,
            }),
            fault => self.run(fault, put).await,
        }
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let put = self.inner.put_multipart_opts(location, opts);
        let inner = self.apply(Op::Put, put).await?;
        Ok(Box::new(FaultUpload {
            store: self.clone(),
            inner,
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let get = self.inner.get_opts(location, options);
        self.apply(Op::Get, get).await
    }

    async fn delete(&self, location: &Path) -> object_store::Result<()> {
        let delete = self.inner.delete(location);
        match self.next_fault(Op::Delete) {
            Some(Fault::Lost) => Ok(()),
            fault => self.run(fault, delete).await,
        }
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let this = self.clone();
        let prefix = prefix.cloned();
        async move {
            let list = async {
                use futures::TryStreamExt;
                this.inner
                    .list(prefix.as_ref())
                    .try_collect::<Vec<_>>()
                    .await
            };
            this.apply(Op::List, list).await
        }
        .into_stream()
        .flat_map(|r| match r {
            Ok(v) => futures::stream::iter(v.into_iter().map(Ok)).boxed(),
            Err(e) => futures::stream::once(async { Err(e) }).boxed(),
        })
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let list = self.inner.list_with_delimiter(prefix);
        self.apply(Op::List, list).await
    }

    async fn copy(&self, from: &Path, to: &Path) -> object_store::Result<()> {
        self.inner.copy(from, to).await
    }

    async fn copy_if_not_exists(&self, from: &Path, to: &Path) -> object_store::Result<()> {
        self.inner.copy_if_not_exists(from, to).await
    }
}

/// A multipart upload through a [`FaultStore`]: each part, the completion
/// and the abort are requests of kind [`Op::Put`], faults and power cuts
/// included.
#[derive(Debug)]
struct FaultUpload {
    store: FaultStore,
    inner: Box<dyn MultipartUpload>,
}

#[async_trait::async_trait]
impl MultipartUpload for FaultUpload {
    fn put_part(&mut self, data: PutPayload) -> object_store::UploadPart {
        // The store is touched only when the fault lets the request
        // through (module table).
        match self.store.next_fault(Op::Put) {
            None => self.inner.put_part(data),
            Some(Fault::Error) => Box::pin(async { Err(injected("request refused")) }),
            Some(Fault::Lost) => Box::pin(async { Err(injected("request lost")) }),
            Some(Fault::Hang(d)) => Box::pin(async move {
                tokio::time::sleep(d).await;
                Err(injected("no answer"))
            }),
            Some(Fault::LostReply) => {
                let part = self.inner.put_part(data);
                Box::pin(async move {
                    part.await?;
                    Err(injected("reply lost after the request succeeded"))
                })
            }
            Some(Fault::Slow(d)) => {
                let part = self.inner.put_part(data);
                Box::pin(async move {
                    tokio::time::sleep(d).await;
                    part.await
                })
            }
        }
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let store = self.store.clone();
        store.apply(Op::Put, self.inner.complete()).await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        let store = self.store.clone();
        store.apply(Op::Put, self.inner.abort()).await
    }
}
