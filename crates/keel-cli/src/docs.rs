//! `keel docs`: print the diagrams generated from the code's own format
//! definitions (docs/wal-records.md and docs/headers.md hold this output;
//! a test in the keel crate fails when they are stale).

use clap::{Args, ValueEnum};

use crate::Failure;

/// Which document to print.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Doc {
    /// Every WAL record type's payload, as a mermaid class diagram
    /// (docs/wal-records.md).
    WalSchema,
    /// The page, WAL record and WAL segment headers, as mermaid packet
    /// diagrams (docs/headers.md).
    Headers,
}

/// Arguments of `keel docs`.
#[derive(Debug, Args)]
pub struct DocsArgs {
    /// The document to print.
    #[arg(value_enum)]
    pub doc: Doc,
}

/// Prints the document to stdout.
pub fn run(args: DocsArgs) -> Result<(), Failure> {
    let text = match args.doc {
        Doc::WalSchema => keel::docs::wal_records_markdown(),
        Doc::Headers => keel::docs::headers_markdown(),
    };
    out!("{text}")?;
    Ok(())
}
