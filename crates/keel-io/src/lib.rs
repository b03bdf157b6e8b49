//! Keel's asynchronous I/O layer (being built: see issue 3).
