//! Engines over a policies directory, for the test files that drive the library rather
//! than the command.

use std::path::Path;
use std::sync::Arc;

use cardrules::{Host, Journal, Sandbox, Trust};

/// A host over `journal` serving every program in `policies` (unsigned allowed; each must
/// load), with their demo holders registered.
pub fn serving_all(journal: Arc<dyn Journal>, policies: &Path) -> Host {
    let host =
        Host::new(Arc::new(Sandbox::new().unwrap()), journal).with_trust(Trust::allow_unsigned());
    assert!(
        cardrules::loader::load_dir(&host, policies)
            .unwrap()
            .is_empty()
    );
    for program in host.programs() {
        host.register_demo_holders(program.id()).unwrap();
    }
    host
}
