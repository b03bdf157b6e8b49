//! A throwaway PostgreSQL cluster: `initdb` into a directory under the
//! bench's data directory, a server listening on a Unix socket only, stopped
//! and removed by `Drop` whatever happened.
//!
//! The server process is the bench's own child (`postgres -D`, not
//! `pg_ctl start`), so the bench reaps it: after [`Cluster::kill`] no
//! zombie keeps the pid that `postmaster.pid` names alive, and the next
//! start runs crash recovery. `pg_ctl` still stops it (`-m fast` or
//! `-m immediate`).
//!
//! `initdb` and the server refuse to run as root. When the bench runs as
//! root, they run as the `postgres` system user (created by the Debian
//! package; `nobody` otherwise) through `runuser`, and the cluster directory
//! is handed to that user.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::Failure;

/// The superuser `initdb` creates; authentication is `trust` on the socket.
pub const SUPERUSER: &str = "keel";
/// The port, which only names the socket file.
pub const PORT: u16 = 5432;

/// Where the PostgreSQL server binaries are: `pg_config --bindir`, else the
/// newest `/usr/lib/postgresql/*/bin`. `None` when no `initdb` is found.
pub fn find_bindir() -> Option<PathBuf> {
    let from_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if let Some(d) = from_config.filter(|d| d.join("initdb").is_file()) {
        return Some(d);
    }
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let v = e.file_name().to_str()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, d)| d.join("initdb").is_file())
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, d)| d)
}

/// A system user to run the server as: (name, uid, gid).
fn unprivileged_user() -> Option<(String, u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    ["postgres", "nobody"].iter().find_map(|want| {
        passwd.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 3 && f[0] == *want)
                .then(|| Some((f[0].to_string(), f[2].parse().ok()?, f[3].parse().ok()?)))
                .flatten()
        })
    })
}

/// A running cluster; stopped and deleted on drop.
pub struct Cluster {
    bindir: PathBuf,
    /// The cluster's data directory.
    pub data: PathBuf,
    /// The directory holding the server's socket.
    pub socket_dir: PathBuf,
    socket_tmp: Option<tempfile::TempDir>,
    run_as: Option<String>,
    /// The server process while it runs: started by the bench itself (not
    /// through `pg_ctl start`), so that the bench reaps it when it ends and
    /// a killed server never lingers as a zombie whose pid `postmaster.pid`
    /// still names.
    server: Option<Child>,
}

impl Cluster {
    /// Runs `initdb` in `root/pg` and writes the settings; not started yet.
    pub fn create(bindir: PathBuf, root: &Path, conf: &[(&str, String)]) -> Result<Self, Failure> {
        let data = root.join("pg");
        std::fs::create_dir_all(&data).map_err(|e| pg_io("create", &data, e))?;
        let meta = std::fs::metadata(&data).map_err(|e| pg_io("stat", &data, e))?;
        let mut run_as = None;
        let mut owner = None;
        if meta.uid() == 0 {
            let (name, uid, gid) = unprivileged_user().ok_or_else(|| {
                Failure(
                    "postgres: running as root and no postgres/nobody user to run the server as"
                        .into(),
                )
            })?;
            run_as = Some(name);
            owner = Some((uid, gid));
            // The server user must reach the cluster through `root`.
            let _ = std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755));
        }
        // A socket path longer than ~100 bytes does not fit sun_path.
        let (socket_dir, socket_tmp) = if data.as_os_str().len() < 90 {
            (data.clone(), None)
        } else {
            let t = tempfile::Builder::new()
                .prefix("keel-pg-")
                .tempdir()
                .map_err(|e| Failure(format!("postgres: socket directory: {e}")))?;
            (t.path().to_path_buf(), Some(t))
        };
        for d in [&data, &socket_dir] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| pg_io("chmod", d, e))?;
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::chown(d, Some(uid), Some(gid))
                    .map_err(|e| pg_io("chown", d, e))?;
            }
        }
        let cluster = Cluster {
            bindir,
            data,
            socket_dir,
            socket_tmp,
            run_as,
            server: None,
        };
        cluster.initdb(conf)?;
        Ok(cluster)
    }

    /// The user the server runs as, when not the current one.
    pub fn run_as(&self) -> Option<&str> {
        self.run_as.as_deref()
    }

    fn command(&self, bin: &str) -> Command {
        let path = self.bindir.join(bin);
        let mut c = match &self.run_as {
            Some(u) => {
                let mut c = Command::new("runuser");
                c.args(["-u", u, "--"]).arg(path);
                c
            }
            None => Command::new(path),
        };
        c.stdin(Stdio::null());
        c
    }

    fn run(&self, what: &str, mut c: Command) -> Result<Output, Failure> {
        let out = c
            .output()
            .map_err(|e| Failure(format!("postgres: cannot run {what}: {e}")))?;
        if !out.status.success() {
            let text = String::from_utf8_lossy(&out.stderr).to_string()
                + &String::from_utf8_lossy(&out.stdout);
            let last = text
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            return Err(Failure(format!(
                "postgres: {what} failed ({}): {last}",
                out.status
            )));
        }
        Ok(out)
    }

    fn initdb(&self, conf: &[(&str, String)]) -> Result<(), Failure> {
        let mut c = self.command("initdb");
        c.arg("-D").arg(&self.data).args([
            "-U",
            SUPERUSER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]);
        self.run("initdb", c)?;
        let path = self.data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&path).map_err(|e| pg_io("read", &path, e))?;
        text.push_str("\n# keel bench\n");
        for (k, v) in conf {
            text.push_str(&format!("{k} = {v}\n"));
        }
        text.push_str(&format!(
            "unix_socket_directories = '{}'\nport = {PORT}\n",
            self.socket_dir.display()
        ));
        std::fs::write(&path, text).map_err(|e| pg_io("write", &path, e))
    }

    /// Starts the server (`postgres -D`, its output appended to
    /// `server.log`) and waits until it accepts connections, trying every
    /// millisecond; returns when the server was launched and the first
    /// connection.
    pub fn start(&mut self) -> Result<(Instant, postgres::Client), Failure> {
        let log_path = self.data.join("server.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| pg_io("open", &log_path, e))?;
        let log2 = log.try_clone().map_err(|e| pg_io("open", &log_path, e))?;
        let mut c = self.command("postgres");
        c.arg("-D").arg(&self.data).stdout(log).stderr(log2);
        let t = Instant::now();
        let server = c
            .spawn()
            .map_err(|e| Failure(format!("postgres: cannot start the server: {e}")))?;
        self.server = Some(server);
        loop {
            let exited = self
                .server
                .as_mut()
                .and_then(|s| s.try_wait().ok().flatten());
            if let Some(status) = exited {
                self.server = None;
                return Err(Failure(format!(
                    "postgres: the server exited at start ({status}): {}",
                    last_line(&log_path)
                )));
            }
            match self.connect() {
                Ok(client) => return Ok((t, client)),
                Err(e) if t.elapsed() > Duration::from_secs(600) => {
                    return Err(Failure(format!("postgres: not ready after 600 s: {e}")));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    }

    /// Reaps the server process once it has ended.
    fn reap(&mut self) -> Result<(), Failure> {
        if let Some(mut server) = self.server.take() {
            server
                .wait()
                .map_err(|e| Failure(format!("postgres: cannot reap the server: {e}")))?;
        }
        Ok(())
    }

    /// The crash: SIGKILL to the server, then to every process it had
    /// started, then waits until all of them are gone. Nothing is written
    /// on the way out (no shutdown checkpoint, no removal of
    /// `postmaster.pid`); the next start finds the lock file's process dead
    /// and runs crash recovery. The server goes first so that it cannot
    /// start new processes; one of its processes that has exited meanwhile
    /// is no error.
    pub fn kill(&mut self) -> Result<(), Failure> {
        let pids = self.pids();
        let Some((server, children)) = pids.split_first() else {
            return Err(Failure("postgres: no server process to kill".into()));
        };
        let kill = |pids: &[String]| {
            Command::new("kill")
                .arg("-KILL")
                .args(pids)
                .stderr(Stdio::null())
                .status()
                .map_err(|e| Failure(format!("postgres: cannot run kill: {e}")))
        };
        let status = kill(std::slice::from_ref(server))?;
        if !status.success() {
            return Err(Failure(format!(
                "postgres: kill -KILL {server} (the server): {status}"
            )));
        }
        self.reap()?;
        if !children.is_empty() {
            kill(children)?;
        }
        let t = Instant::now();
        while pids.iter().any(|p| alive(p)) {
            if t.elapsed() > Duration::from_secs(60) {
                return Err(Failure(format!(
                    "postgres: server processes {pids:?} still there 60 s after SIGKILL"
                )));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    /// Stops the server: `fast` (clean) or `immediate` (a crash).
    pub fn stop(&mut self, mode: &str) -> Result<(), Failure> {
        let mut c = self.command("pg_ctl");
        c.arg("-D")
            .arg(&self.data)
            .args(["-m", mode, "-w", "-t", "120", "stop"]);
        self.run("pg_ctl stop", c)?;
        self.reap()
    }

    /// A new connection to the `postgres` database.
    pub fn connect(&self) -> Result<postgres::Client, postgres::Error> {
        postgres::Config::new()
            .host_path(&self.socket_dir)
            .port(PORT)
            .user(SUPERUSER)
            .dbname("postgres")
            .connect(postgres::NoTls)
    }

    /// The server's process and its children, for their I/O counters.
    pub fn pids(&self) -> Vec<String> {
        let Ok(text) = std::fs::read_to_string(self.data.join("postmaster.pid")) else {
            return Vec::new();
        };
        let Some(main) = text.lines().next().map(str::trim).map(String::from) else {
            return Vec::new();
        };
        let mut pids = vec![main.clone()];
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return pids;
        };
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            // Fields after the command name (which may hold spaces): state ppid …
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().nth(1));
            if ppid == Some(main.as_str()) {
                pids.push(name);
            }
        }
        pids
    }
}

/// The last non-empty line of the file at `path` (a server log).
fn last_line(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .to_string()
}

/// Whether process `pid` still runs (a zombie, already dead, does not).
fn alive(pid: &str) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, r)| r.split_whitespace().next());
    !matches!(state, Some("Z") | Some("X") | None)
}

fn pg_io(what: &str, path: &Path, e: std::io::Error) -> Failure {
    Failure(format!("postgres: cannot {what} {}: {e}", path.display()))
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.server.is_some() && self.stop("immediate").is_err() {
            eprintln!(
                "keel: warning: could not stop the PostgreSQL server in {}",
                self.data.display()
            );
        }
        let _ = std::fs::remove_dir_all(&self.data);
        drop(self.socket_tmp.take());
    }
}
