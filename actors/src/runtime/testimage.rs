//! Test support: a tiny busybox image for tests that need a real Docker Engine, made locally
//! (this machine has no registry to pull from), and the rule for when the engine is missing.
//!
//! Public, not `#[cfg(test)]`, so that end-to-end tests in other crates and `tests/` use the same
//! helper. It shells out to `docker` and `apt-get`; nothing in the node calls it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// The test image, and a second tag of it for update tests.
pub const TEST_IMAGE: &str = "swarm-test/busybox:1";
pub const TEST_IMAGE_2: &str = "swarm-test/busybox:2";

/// The busybox applets the image links in `/bin`.
pub const APPLETS: &[&str] = &[
    "sh", "sleep", "httpd", "nc", "wget", "true", "false", "cat", "echo",
];

/// Serialises image building within one test process.
static BUILDING: Mutex<()> = Mutex::new(());

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn image_exists(image: &str) -> bool {
    run(Command::new("docker")
        .args(["image", "inspect", image])
        .stdout(Stdio::null()))
    .is_ok()
}

/// Finds a busybox binary, installing `busybox-static` with apt when missing and running as root.
fn busybox() -> Result<std::path::PathBuf, String> {
    for p in ["/bin/busybox", "/usr/bin/busybox"] {
        if Path::new(p).exists() {
            return Ok(p.into());
        }
    }
    // Only root may install packages.
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    if uid != "0" {
        return Err("busybox is missing and we are not root to install busybox-static".into());
    }
    let install = || {
        run(Command::new("apt-get")
            .args(["install", "-y", "-q", "busybox-static"])
            .env("DEBIAN_FRONTEND", "noninteractive"))
    };
    if install().is_err() {
        run(Command::new("apt-get").args(["update", "-q"]))?;
        install()?;
    }
    Path::new("/bin/busybox")
        .exists()
        .then(|| "/bin/busybox".into())
        .ok_or_else(|| "busybox-static installed but /bin/busybox is missing".into())
}

/// Makes sure [`TEST_IMAGE`] and [`TEST_IMAGE_2`] exist on the local engine: a root file system
/// with `bin/busybox` and links for [`APPLETS`], imported with `docker import`, `PATH=/bin`.
pub fn ensure_test_image() -> Result<(), String> {
    let _one_at_a_time = BUILDING.lock().unwrap_or_else(|p| p.into_inner());
    if image_exists(TEST_IMAGE) && image_exists(TEST_IMAGE_2) {
        return Ok(());
    }
    let bb = busybox()?;
    let root = tempfile_dir()?;
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).map_err(|e| e.to_string())?;
    std::fs::copy(&bb, bin.join("busybox")).map_err(|e| e.to_string())?;
    for applet in APPLETS {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).map_err(|e| e.to_string())?;
    }
    std::fs::create_dir_all(root.join("tmp")).map_err(|e| e.to_string())?;
    let script = format!(
        "tar -C '{}' -c . | docker import --change 'ENV PATH=/bin' - {TEST_IMAGE}",
        root.display()
    );
    let imported = run(Command::new("sh").args(["-c", &script]));
    let _ = std::fs::remove_dir_all(&root); // a temp folder; leaving it is harmless
    imported?;
    run(Command::new("docker").args(["tag", TEST_IMAGE, TEST_IMAGE_2]))?;
    Ok(())
}

fn tempfile_dir() -> Result<std::path::PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("swarm-test-image-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir); // a leftover of an earlier run of this PID
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    Ok(dir)
}

/// Whether docker tests may run. Returns `Err(reason)` when the engine cannot be reached or the
/// test image cannot be made: callers print the reason and skip. Under `CI=true` a missing
/// engine is a failure, not a skip, so this panics.
pub fn docker_available() -> Result<(), String> {
    let result = run(Command::new("docker")
        .args(["version", "--format", "{{.Server.APIVersion}}"])
        .stdout(Stdio::null()))
    .and_then(|()| ensure_test_image());
    if let Err(why) = &result
        && std::env::var("CI").as_deref() == Ok("true")
    {
        panic!("CI=true and docker tests cannot run: {why}");
    }
    result
}
