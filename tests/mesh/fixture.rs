//! The mesh and overlay tests' cluster: the shared three-node lab cluster
//! (`tests/common/cluster_lab.rs`) with what these tests add: the Docker test's containers,
//! the process tasks' pages, and a wait for a service's tasks; the replies over the mesh are
//! waited for by [`ClusterLab::wait_answers`].

use std::collections::BTreeSet;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use crate::common::cluster_lab::ClusterLab;
use crate::common::{self, wait_until};
use crate::lab::{Containers, LabNet};

// The mesh and overlay tests and the overlay benchmark each use a different part of these.
#[allow(unused_imports)]
pub use crate::common::cluster_lab::{REQUESTS, httpd_script, one_at_a_time, task_pids};

/// How long tasks may take to run, and the mesh to follow a change (generous: shared,
/// noisy machines; the goal is a second).
pub const LIMIT: Duration = Duration::from_secs(60);

/// The shared cluster, and the Docker test's containers.
pub struct Mesh {
    pub cluster: ClusterLab,
    /// The Docker test's containers, removed once the nodes are gone (fields drop in order).
    pub containers: Option<Containers>,
}

impl Deref for Mesh {
    type Target = ClusterLab;
    fn deref(&self) -> &ClusterLab {
        &self.cluster
    }
}

impl DerefMut for Mesh {
    fn deref_mut(&mut self) -> &mut ClusterLab {
        &mut self.cluster
    }
}

/// Whether the lab cannot run here (it needs curl and python3 too; `docker`: the Docker
/// Engine too); a failure under `CI=true`.
pub fn skip(test: &str, docker: bool) -> bool {
    if common::cluster_lab::skip(test, &["curl", "python3"]) {
        return true;
    }
    // `docker_engine` prints its own reason and fails under CI.
    docker && !common::docker_engine()
}

impl Mesh {
    /// Makes the lab and forms the cluster (see [`ClusterLab::form`]), with a folder for the
    /// tasks' pages.
    pub fn form(net: LabNet) -> Mesh {
        let cluster = ClusterLab::form(net);
        std::fs::create_dir_all(cluster.root.path().join("www")).unwrap();
        Mesh {
            cluster,
            containers: None,
        }
    }

    /// Where process tasks keep their pages (`www/<task id>/`).
    pub fn www(&self) -> std::path::PathBuf {
        self.root.path().join("www")
    }

    /// `service create -d --name NAME FLAGS… EXTRA… COMMAND…` on n1: `flags` split at
    /// whitespace, `extra` for values that hold spaces.
    pub fn create(&self, name: &str, flags: &str, extra: &[&str], command: &[&str]) {
        let mut a = vec!["service", "create", "-d", "--name", name];
        a.extend(flags.split_whitespace());
        a.extend_from_slice(extra);
        a.extend_from_slice(command);
        self.n1().ok(&a);
    }

    /// Waits until `n` tasks of `svc` run; their IDs.
    pub fn wait_running(&self, svc: &str, n: usize) -> BTreeSet<String> {
        let mut ids = BTreeSet::new();
        let ok = wait_until(LIMIT, || {
            ids = self.running(svc).into_keys().collect();
            ids.len() == n
        });
        assert!(
            ok,
            "{svc}: {} of {n} tasks running: {:?}",
            ids.len(),
            self.n1().service_ps(svc)
        );
        ids
    }
}
