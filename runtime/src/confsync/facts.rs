//! What a node tells about itself (R9.2), read from the kernel and the firmware.

use tandem_config::NodeId;

pub use tandem_api::NodeFacts;

fn read_line(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// This node's facts, with its committed configuration `cfg` (its revision, and the
/// replicated device it describes).
#[must_use]
pub fn local_facts(node: NodeId, cfg: Option<&tandem_config::ApplianceConfig>) -> NodeFacts {
    let revision = cfg.map_or(0, |c| c.cluster.revision);
    let replication = cfg.and_then(|c| {
        crate::replication::Replication::new(
            c,
            std::path::Path::new(crate::replication::NODE_CONF_DIR),
        )
        .facts()
    });
    let dmi = |f: &str| read_line(&format!("/sys/class/dmi/id/{f}"));
    let hardware: Vec<String> = [
        dmi("sys_vendor"),
        dmi("product_name"),
        dmi("product_serial"),
    ]
    .into_iter()
    .filter(|s| !s.is_empty())
    .collect();
    NodeFacts {
        node: node.to_string(),
        hostname: read_line("/proc/sys/kernel/hostname"),
        kernel: read_line("/proc/sys/kernel/osrelease"),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        hardware: hardware.join(" "),
        revision,
        replication,
    }
}
