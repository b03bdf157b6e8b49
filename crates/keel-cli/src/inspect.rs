//! `keel inspect`: decode on-disk structures with the same formatter the
//! tests' golden files use.

use std::path::PathBuf;

use clap::Subcommand;
use keel::PageId;
use keel::page::{DumpOptions, PAGE_SIZE, dump_page};

use crate::Failure;

#[derive(Debug, Subcommand)]
pub enum Target {
    /// Print one page of a page file: header, verdict, slots, tuples.
    Page {
        /// File of 8 KiB pages (page N at byte N * 8192).
        #[arg(long)]
        file: PathBuf,
        /// Page number.
        #[arg(long)]
        page: u32,
        /// Also print a hexdump of the page.
        #[arg(long)]
        hex: bool,
    },
}

pub fn run(target: Target) -> Result<(), Failure> {
    match target {
        Target::Page { file, page, hex } => {
            let bytes = read_page(&file, page)?;
            let dump = dump_page(
                &bytes,
                PageId(page),
                &DumpOptions {
                    hex,
                    preview_bytes: 0,
                },
            );
            print!("{dump}");
            match keel::page::verify(&bytes, PageId(page)) {
                Ok(_) => Ok(()),
                Err(e) => Err(Failure(format!("{}: {e}", file.display()))),
            }
        }
    }
}

/// Reads page `page` of `file`; a page past the end is an error naming both.
fn read_page(file: &PathBuf, page: u32) -> Result<Vec<u8>, Failure> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(file)
        .map_err(|e| Failure(format!("cannot open {}: {e}", file.display())))?;
    let len = f
        .metadata()
        .map_err(|e| Failure(format!("{}: {e}", file.display())))?
        .len();
    let pages = len / PAGE_SIZE as u64;
    if u64::from(page) >= pages {
        return Err(Failure(format!(
            "{} has {pages} whole pages; there is no page {page}",
            file.display()
        )));
    }
    let mut buf = vec![0u8; PAGE_SIZE];
    f.seek(SeekFrom::Start(u64::from(page) * PAGE_SIZE as u64))
        .and_then(|_| f.read_exact(&mut buf))
        .map_err(|e| Failure(format!("reading page {page} of {}: {e}", file.display())))?;
    Ok(buf)
}
