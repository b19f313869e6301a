//! `serve --shadow`: the thread that keeps candidate versions following the live decisions.

use std::sync::Arc;
use std::time::Duration;

/// Keeps `shadow` following the live journal, a moment behind, on its own thread; logs and
/// carries on when the journal cannot be read.
pub fn follow(shadow: Arc<cardrules::shadow::Shadow>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("cardrules-shadow".into())
        .spawn(move || {
            loop {
                if let Err(e) = shadow.follow() {
                    tracing::warn!("shadow: {e}");
                }
                std::thread::sleep(SHADOW_PERIOD);
            }
        })
        .map(drop)
}

/// How often the shadow reads the journal's new decisions.
const SHADOW_PERIOD: Duration = Duration::from_millis(200);
