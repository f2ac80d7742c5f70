//! After every run: tell monitoring (metrics file, webhook, ping URL). A webhook or ping that
//! fails is a warning; a metrics file that cannot be written is an alert of the run, and is
//! kept in the state folder until a write succeeds, so `coffer status` reports it (alerting
//! fed by that file is blind meanwhile).

use super::common::Store;
use super::Global;
use coffer::config::ConfigFile;
use coffer::jobs::metrics::{self, RegionHealth};
use coffer::jobs::notify::Notifier;
use coffer::jobs::state::{self, MetricsFailure};
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
/// failure. A metrics file that could not be written is added to the report's alerts (so the
/// webhook and ping hear of it too); returns false then.
pub fn after_run(
    g: &Global,
    cfg: &ConfigFile,
    repo: &Repository,
    store: &Store,
    report: &mut RunReport,
) -> bool {
    let mut metrics_ok = true;
    if let Some(path) = &cfg.monitoring.prometheus_textfile {
        let written =
            metrics_text(g, cfg, repo, store).and_then(|text| metrics::write_textfile(path, &text));
        let failure = written.err().map(|e| MetricsFailure {
            path: path.clone(),
            time_ns: repo.clock().now(),
            error: e.to_string(),
        });
        if let Some(f) = &failure {
            metrics_ok = false;
            report.alerts.push(metrics_problem(f));
            report.ok = false;
        }
        let recorded = super::common::jobs_state_dir(g)
            .and_then(|dir| state::record_metrics_write(&dir, failure.as_ref()));
        if let Err(e) = recorded {
            warn(&format!("the metrics file's outcome was not recorded: {e}"));
        }
    }
    warn_plaintext_once(cfg);
    let notifier = Notifier::new(&cfg.monitoring);
    if notifier.is_configured() {
        notifier.finished(report).iter().for_each(|w| warn(w));
    }
    metrics_ok
}

/// The sentence for a metrics file that was not written, in a run's alerts and in `status`.
pub fn metrics_problem(f: &MetricsFailure) -> String {
    format!(
        "metrics file {} not written at {}: {}",
        f.path.display(),
        coffer::browse::format_time_rfc3339(f.time_ns),
        f.error
    )
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
