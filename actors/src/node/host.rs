//! What this machine offers: hostname, CPUs, memory, and the task runtimes it can run.

use std::time::Duration;

use crate::model::NodeResources;

/// How long to wait for the Docker Engine to answer before deciding it is not there.
pub const DOCKER_PROBE_TIMEOUT_MS: u64 = 1_500;

/// The runtime every node has: tasks as OS processes.
pub const RUNTIME_PROCESS: &str = "process";
/// Tasks as containers on the local Docker Engine.
pub const RUNTIME_DOCKER: &str = "docker";

/// The machine's hostname as the kernel has it, or "localhost" where it cannot be read.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// CPUs and memory of this machine.
pub fn resources() -> NodeResources {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get() as u64)
        .unwrap_or(1);
    NodeResources {
        nano_cpus: cpus * 1_000_000_000,
        memory_bytes: mem_total_bytes().unwrap_or(0),
    }
}

fn mem_total_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_total(&text)
}

fn parse_mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The Docker Engine's version when one answers on the local socket within the timeout.
pub async fn docker_engine_version() -> Option<String> {
    let docker = bollard::Docker::connect_with_local_defaults().ok()?;
    let probe = tokio::time::timeout(
        Duration::from_millis(DOCKER_PROBE_TIMEOUT_MS),
        docker.version(),
    );
    match probe.await {
        Ok(Ok(v)) => Some(v.version.unwrap_or_else(|| "unknown".to_string())),
        _ => None,
    }
}

/// The runtimes this node offers and the ENGINE VERSION it shows.
pub async fn runtimes() -> (Vec<String>, String) {
    match docker_engine_version().await {
        Some(v) => (
            vec![RUNTIME_DOCKER.to_string(), RUNTIME_PROCESS.to_string()],
            v,
        ),
        None => (
            vec![RUNTIME_PROCESS.to_string()],
            format!("swarm-node {}", env!("CARGO_PKG_VERSION")),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_mem_total() {
        let text = "MemFree: 10 kB\nMemTotal:       24576000 kB\n";
        assert_eq!(parse_mem_total(text), Some(24_576_000 * 1024));
        assert_eq!(parse_mem_total("nothing"), None);
    }
}
