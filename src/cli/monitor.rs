//! After every run: tell monitoring (metrics file, webhook, ping URL). Failures to report are
//! warnings; they never change a run's outcome.

use super::common::Store;
use super::Global;
use coffer::config::ConfigFile;
use coffer::jobs::metrics::{self, RegionHealth};
use coffer::jobs::notify::Notifier;
use coffer::jobs::status::read_all;
use coffer::jobs::RunReport;
use coffer::repo::Repository;

fn warn(m: &str) {
    super::term::warn(m);
}

/// Plain-http webhooks and ping URLs, said once per process (a daemon reports every run).
fn warn_plaintext_once(cfg: &ConfigFile) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        coffer::jobs::notify::plaintext_warnings(&cfg.monitoring)
            .iter()
            .for_each(|w| warn(w))
    });
}

/// A run is starting: `ping_url/start`, if the job file has one.
pub fn before_run(cfg: &ConfigFile) {
    warn_plaintext_once(cfg);
    if cfg.monitoring.ping_url.is_some() {
        Notifier::new(&cfg.monitoring)
            .started()
            .iter()
            .for_each(|w| warn(w));
    }
}

/// A run finished: rewrite the metrics file, POST the report to the webhook, ping success or
/// failure.
pub fn after_run(
    g: &Global,
    cfg: &ConfigFile,
    repo: &Repository,
    store: &Store,
    report: &RunReport,
) {
    if let Some(path) = &cfg.monitoring.prometheus_textfile {
        let written =
            metrics_text(g, cfg, repo, store).and_then(|text| metrics::write_textfile(path, &text));
        if let Err(e) = written {
            warn(&format!("metrics not written: {e}"));
        }
    }
    warn_plaintext_once(cfg);
    let notifier = Notifier::new(&cfg.monitoring);
    if notifier.is_configured() {
        notifier.finished(report).iter().for_each(|w| warn(w));
    }
}

/// The metrics for every job of the file and every region, as of now.
fn metrics_text(
    g: &Global,
    cfg: &ConfigFile,
    repo: &Repository,
    store: &Store,
) -> coffer::Result<String> {
    let now = repo.clock().now();
    let jobs: Vec<_> = cfg.jobs.iter().collect();
    let state_dir = super::common::jobs_state_dir(g)?;
    let all = read_all(repo, &jobs, &state_dir, now, &jiff::tz::TimeZone::system())?;
    let regions = regions(store);
    Ok(metrics::render_with_archive(
        &all.jobs,
        &regions,
        all.wal_archive.as_ref(),
        now,
    ))
}

/// Each region's health; regions this process saw fail a write are behind whatever their
/// listings say.
pub fn regions(store: &Store) -> Vec<RegionHealth> {
    let each = store.each_region();
    let mut health = metrics::region_health(&each).unwrap_or_else(|e| {
        warn(&format!("regions not compared: {e}"));
        each.iter()
            .map(|(name, _)| RegionHealth {
                name: name.clone(),
                reachable: false,
                behind: false,
            })
            .collect()
    });
    for (name, _) in store.behind() {
        if let Some(h) = health.iter_mut().find(|h| h.name == name) {
            h.behind = true;
        }
    }
    health
}
