//! The chaos harness's part of the lab (`tests/common/lab.rs`): namespaces `swch-*` on
//! 10.77.0.0/24, every node on port 7946 of its own address.

pub use crate::common::lab::{Lab, LabNet, pids_in, unavailable};

pub const NET: LabNet = LabNet {
    prefix: "swch-",
    octets: [10, 77, 0],
    port: 7946,
};
