//! Where the stack commands read compose files: the one place they call the compose reader
//! (`crate::stack::compose`), so that `deploy` and `config` work on a [`StackPlan`] and text
//! alone and their own tests need no file.

use std::path::PathBuf;

use crate::stack::StackPlan;

/// The plan `stack deploy -c FILE… STACK` applies: the files parsed, interpolated, merged and
/// converted, or why not (file, line and key), before anything is created.
pub fn plan_files(files: &[PathBuf], namespace: &str) -> anyhow::Result<StackPlan> {
    Ok(crate::stack::compose::plan_files(files, namespace)?)
}

/// `stack config -c FILE…`: the merged, interpolated file as it will be deployed.
pub fn config_text(files: &[PathBuf]) -> anyhow::Result<String> {
    Ok(crate::stack::compose::config_text(files)?)
}
