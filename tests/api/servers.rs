//! Throwaway PostgreSQL and MariaDB servers: own data directory, free port, killed with the
//! test process (PR_SET_PDEATHSIG from a thread that lives as long as the process).

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Children must be spawned by a thread that never exits: the death signal fires when the
/// spawning *thread* ends, and test threads end all the time.
fn spawner() -> &'static Mutex<mpsc::Sender<SpawnRequest>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::spawn(move || {
            for (mut command, reply) in rx {
                let _ = reply.send(command.spawn());
            }
            loop {
                std::thread::park();
            }
        });
        Mutex::new(tx)
    })
}

fn spawn_supervised(mut command: Command, run_as: Option<(u32, u32)>) -> Child {
    unsafe {
        command.pre_exec(move || {
            if let Some((uid, gid)) = run_as {
                if libc::setgid(gid) != 0 || libc::setuid(uid) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let (tx, rx) = mpsc::channel();
    spawner().lock().unwrap().send((command, tx)).unwrap();
    rx.recv().unwrap().expect("spawn database server")
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited during start-up: {status}");
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} did not listen on {port} within 60 s");
}

fn wait_until_accepting(port: u16, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("Postgres exited during start-up: {status}");
        }
        let ready = Command::new(pg_bin("pg_isready"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", "1", "-q"])
            .status()
            .is_ok_and(|s| s.success());
        if ready {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("Postgres did not accept sessions on {port} within 60 s");
}

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

fn user_ids(user: &str) -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, user])
            .output()
            .expect("run id");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("numeric id")
    };
    (id("-u"), id("-g"))
}

fn run(command: &mut Command, run_as: Option<(u32, u32)>, what: &str) {
    if let Some((uid, gid)) = run_as {
        command.uid(uid).gid(gid);
    }
    let out = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Which server program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// PostgreSQL, reached with psqlODBC.
    Postgres,
    /// MariaDB, reached with MariaDB Connector/ODBC.
    MariaDb,
}

/// A running throwaway database server.
pub struct DbServer {
    /// Engine.
    pub engine: Engine,
    /// TCP port.
    pub port: u16,
    dir: PathBuf,
    _keep: tempfile::TempDir,
    run_as: Option<(u32, u32)>,
    child: Mutex<Option<Child>>,
}

/// Removes the data directories of earlier runs whose test process has ended (each is about
/// a gigabyte; the servers died with their process).
fn remove_orphaned_data() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with("portico-db-")
        {
            continue;
        }
        let owner = std::fs::read_to_string(path.join("owner.pid"))
            .ok()
            .and_then(|pid| pid.trim().parse::<u32>().ok());
        if owner.is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists()) {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

fn pg_bin(tool: &str) -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server installed (make test installs it)")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    versions.sort();
    versions
        .last()
        .expect("a PostgreSQL version")
        .join("bin")
        .join(tool)
}

impl DbServer {
    /// Initializes a data directory and starts the server.
    pub fn start(engine: Engine) -> Self {
        remove_orphaned_data();
        let keep = tempfile::Builder::new()
            .prefix("portico-db-")
            .tempdir()
            .unwrap();
        let dir = keep.path().to_path_buf();
        // The servers shared by a whole run live in statics, never dropped: the next run
        // removes their data once this process is gone.
        std::fs::write(dir.join("owner.pid"), std::process::id().to_string()).unwrap();
        let run_as = match engine {
            Engine::Postgres if is_root() => Some(user_ids("postgres")),
            _ => None,
        };
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
        }
        let data = dir.join("data");
        match engine {
            Engine::Postgres => run(
                Command::new(pg_bin("initdb"))
                    .args([
                        "-U",
                        "postgres",
                        "--auth=trust",
                        "--locale=C",
                        "-E",
                        "UTF8",
                        "-D",
                    ])
                    .arg(&data),
                run_as,
                "initdb",
            ),
            Engine::MariaDb => {
                let mut cmd = Command::new("mariadb-install-db");
                cmd.arg("--no-defaults")
                    .arg(format!("--datadir={}", data.display()))
                    .args(["--auth-root-authentication-method=normal", "--skip-test-db"]);
                if is_root() {
                    cmd.arg("--user=root");
                }
                run(&mut cmd, None, "mariadb-install-db");
            }
        }
        let server = Self {
            engine,
            port: free_port(),
            dir,
            _keep: keep,
            run_as,
            child: Mutex::new(None),
        };
        server.resume();
        server
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("mysqld.sock")
    }

    /// Starts (or restarts) the server process on the same data and port.
    pub fn resume(&self) {
        let data = self.dir.join("data");
        let mut command = match self.engine {
            Engine::Postgres => {
                let mut c = Command::new(pg_bin("postgres"));
                c.arg("-D")
                    .arg(&data)
                    .args([
                        "-p",
                        &self.port.to_string(),
                        "-c",
                        "listen_addresses=127.0.0.1",
                    ])
                    .arg("-k")
                    .arg(&self.dir)
                    .args(["-c", "fsync=off", "-c", "max_connections=200"]);
                c
            }
            Engine::MariaDb => {
                let mut c = Command::new("mariadbd");
                c.arg("--no-defaults")
                    .arg(format!("--datadir={}", data.display()))
                    .arg(format!("--port={}", self.port))
                    .arg("--bind-address=127.0.0.1")
                    .arg(format!("--socket={}", self.socket().display()))
                    .arg(format!(
                        "--pid-file={}",
                        self.dir.join("mysqld.pid").display()
                    ))
                    .args([
                        "--skip-log-bin",
                        "--innodb-buffer-pool-size=32M",
                        "--max-connections=200",
                    ]);
                if is_root() {
                    c.arg("--user=root");
                }
                c
            }
        };
        command.stdout(Stdio::null()).stderr(Stdio::null());
        let mut child = spawn_supervised(command, self.run_as);
        wait_for_port(self.port, &mut child, &format!("{:?}", self.engine));
        if self.engine == Engine::Postgres {
            // PostgreSQL listens before it accepts sessions ("the database system is starting
            // up"): wait until it says it accepts them.
            wait_until_accepting(self.port, &mut child);
        }
        *self.child.lock().unwrap() = Some(child);
    }

    /// Kills the server process (the data stays).
    pub fn stop(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            // PostgreSQL: SIGINT is the fast shutdown that disconnects clients (SIGKILL would
            // orphan its backends); MariaDB: SIGTERM.
            let signal = match self.engine {
                Engine::Postgres => libc::SIGINT,
                Engine::MariaDb => libc::SIGTERM,
            };
            unsafe { libc::kill(child.id() as i32, signal) };
            let deadline = Instant::now() + Duration::from_secs(30);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // Wait until the port is free again.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// ODBC connection string for `database`.
    pub fn connection_string(&self, database: &str) -> String {
        match self.engine {
            Engine::Postgres => format!(
                "Driver={{PostgreSQL Unicode}};Server=127.0.0.1;Port={};Database={database};Uid=postgres;Pwd=;",
                self.port
            ),
            Engine::MariaDb => format!(
                "Driver={{MariaDB Unicode}};Server=localhost;Socket={};Database={database};Uid=root;Pwd=;CHARSET=utf8mb4;",
                self.socket().display()
            ),
        }
    }

    /// The administrative database to create others from.
    pub fn admin_database(&self) -> &'static str {
        match self.engine {
            Engine::Postgres => "postgres",
            Engine::MariaDb => "mysql",
        }
    }
}

impl Drop for DbServer {
    fn drop(&mut self) {
        self.stop();
    }
}
