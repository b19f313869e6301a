//! Loading the programs as the server starts, and hot reload: a watcher that updates each
//! program whose files change (each version passes its own suites before it is served).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cardrules::{Error, Host};

use crate::metrics::Metrics;

/// How long the watcher waits for a burst of file changes to settle before reloading.
const SETTLE: Duration = Duration::from_millis(300);

/// Loads (through [`cardrules::loader::update`], so each program passes its own suites) every program
/// under `policies`; returns how many are served. Refusals are logged.
pub fn load_programs(host: &Host, policies: &Path) -> cardrules::Result<usize> {
    let served = cardrules::loader::serve_dir(host, policies)?;
    for program in &served {
        tracing::info!(
            program = program.id(),
            version = program.policy.info.version,
            digest = program.policy.digest,
            "serving"
        );
    }
    Ok(served.len())
}

/// Watches `policies` and hot-reloads each program whose files change (see
/// [`cardrules::loader::update`]), counting each reload in `metrics`. The watch ends when
/// the returned watcher is dropped.
pub fn watch(
    host: Arc<Host>,
    policies: &Path,
    metrics: Arc<Metrics>,
) -> cardrules::Result<notify::RecommendedWatcher> {
    use notify::Watcher;
    let root = policies
        .canonicalize()
        .map_err(|e| Error::host(format!("cannot watch `{}`", policies.display()), e))?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<PathBuf>();
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event) if !event.kind.is_access() => {
                for path in event.paths {
                    let _ = tx.send(path);
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("watching policies: {e}"),
        })
        .map_err(|e| Error::host(format!("cannot watch `{}`", root.display()), e))?;
    watcher
        .watch(&root, notify::RecursiveMode::Recursive)
        .map_err(|e| Error::host(format!("cannot watch `{}`", root.display()), e))?;

    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            // Let a burst of writes (a copied directory, an editor's save) settle.
            let mut changed = BTreeSet::from([first]);
            loop {
                match tokio::time::timeout(SETTLE, rx.recv()).await {
                    Ok(Some(path)) => {
                        changed.insert(path);
                    }
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            let dirs: BTreeSet<PathBuf> = changed
                .iter()
                .filter_map(|path| path.strip_prefix(&root).ok())
                .filter_map(|rel| rel.components().next())
                .map(|first| root.join(first))
                .filter(|dir| dir.join("policy.toml").is_file())
                .collect();
            for dir in dirs {
                let host = host.clone();
                let shown = dir.display().to_string();
                let name = dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let outcome =
                    tokio::task::spawn_blocking(move || cardrules::loader::update(&host, &dir))
                        .await;
                match outcome {
                    Ok(Ok(program)) => {
                        metrics.reloaded(program.id(), true);
                        tracing::info!(
                            program = program.id(),
                            version = program.policy.info.version,
                            digest = program.policy.digest,
                            "reloaded `{shown}`"
                        );
                    }
                    Ok(Err(e)) => {
                        metrics.reloaded(&name, false);
                        tracing::error!("update refused, previous version kept: {e}");
                    }
                    Err(e) => {
                        metrics.reloaded(&name, false);
                        tracing::error!("reload of `{shown}` failed: {e}");
                    }
                }
            }
        }
    });
    Ok(watcher)
}
