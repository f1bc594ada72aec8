//! A full disk under the real binary (root only: the data directory is a 2 MiB tmpfs).
//! Writes get `ServiceUnavailable` (503), reads keep working, nothing acknowledged is lost,
//! and writes work again by themselves once space returns. Not root: `SKIPPED` — or a
//! failure when `CI` is set (as the PostgreSQL tests).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::Server;
use vpnroute_client::{Client, Scheme};

/// A tmpfs mounted for the test; unmounted on drop (also when the test fails).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(st.success(), "mount tmpfs failed");
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount").arg(&self.0).status().is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Fill the file system holding `dir` with `filler` until a write fails.
fn fill(filler: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(filler).unwrap();
    let chunk = vec![0xa5u8; 4096];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
}

fn vpc_count(c: &mut Client) -> u64 {
    let r = c.call("DescribeVpcs", &[("RegionId", "cn-hangzhou")]).unwrap();
    assert_eq!(r.status, 200, "reads keep working: {}", r.body);
    r.json()["TotalCount"].as_u64().unwrap()
}

#[test]
fn a_full_disk_refuses_writes_keeps_reads_and_recovers() {
    if !is_root() {
        // In CI the test must run: a skip there would hide the fault handling untested.
        if std::env::var_os("CI").is_some() {
            panic!("a_full_disk_refuses_writes_keeps_reads_and_recovers needs root (mount tmpfs) and CI is set");
        }
        eprintln!("SKIPPED a_full_disk_refuses_writes_keeps_reads_and_recovers: needs root (mount tmpfs)");
        return;
    }
    let outer = tempfile::tempdir().unwrap();
    let mount = outer.path().join("data");
    std::fs::create_dir(&mount).unwrap();
    let _tmpfs = Tmpfs::mount(&mount, "2m");
    let data = mount.join("vpnroute");
    let mut server = Server::start(&data, &["--quota-vpcs", "100000"]);
    let mut c = server.client(Scheme::V1);
    let create = |c: &mut Client| {
        c.call(
            "CreateVpc",
            &[("RegionId", "cn-hangzhou"), ("Description", &"d".repeat(100))],
        )
        .unwrap()
    };
    let mut acknowledged = 0u64;
    for _ in 0..5 {
        assert_eq!(create(&mut c).status, 200);
        acknowledged += 1;
    }

    let filler = mount.join("filler");
    fill(&filler);
    // Writes until the database or the nonce log needs a page it cannot get.
    let mut refused = None;
    for _ in 0..2000 {
        let r = create(&mut c);
        match r.status {
            200 => acknowledged += 1,
            _ => {
                refused = Some(r);
                break;
            }
        }
    }
    let r = refused.expect("a write on a full disk is refused");
    eprintln!("full disk after {acknowledged} acknowledged creates: {}", r.body);
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.code().as_deref(), Some("ServiceUnavailable"), "{}", r.body);
    assert_eq!(
        r.json()["Message"],
        "The request has failed due to a temporary failure of the server."
    );
    // Reads are served (their nonces wait in memory for space), repeatedly.
    for _ in 0..5 {
        assert_eq!(vpc_count(&mut c), acknowledged);
    }

    // Space returns: writes work again without a restart.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = create(&mut c);
        if r.status == 200 {
            acknowledged += 1;
            break;
        }
        assert_eq!(r.code().as_deref(), Some("ServiceUnavailable"), "{}", r.body);
        assert!(Instant::now() < deadline, "writes did not recover");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(vpc_count(&mut c), acknowledged);

    // Nothing acknowledged is lost across a crash.
    server.kill9_and_restart();
    let mut c = server.client(Scheme::V1);
    assert_eq!(vpc_count(&mut c), acknowledged);
    drop(server);
}
