//! The stack test's and benchmark's part of the lab: the shared three-node cluster
//! (`tests/common/cluster_lab.rs`) on the test's namespaces `swst-*` (10.79.0.0/24, node port
//! 29301) or the benchmark's `swsb-*` (10.79.2.0/24, 29311); each lab's bridge is in a namespace
//! of its own, so its addresses meet no other harness's.

use std::path::Path;

use crate::common::lab::LabNet;

pub use crate::common::cluster_lab::ClusterLab as Cluster;

pub const NET: LabNet = LabNet {
    prefix: "swst-",
    octets: [10, 79, 0],
    port: 29301,
};
/// The benchmark's lab.
#[allow(dead_code)] // the test uses NET
pub const BENCH_NET: LabNet = LabNet {
    prefix: "swsb-",
    octets: [10, 79, 2],
    port: 29311,
};

/// Whether the lab cannot run here (it needs curl too); a failure under `CI=true`.
pub fn skip(test: &str) -> bool {
    crate::common::cluster_lab::skip(test, &["curl"])
}

/// Reads a number a task wrote to `path` (a time in ns), once it is there.
#[allow(dead_code)] // the benchmark does not read times
pub fn read_ns(path: &Path) -> Option<u128> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}
