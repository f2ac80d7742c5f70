//! The environment of the programs coffer starts (`pg_dump`, `psql`, `ssh`...): cleared, then
//! given back only an allow-list.
//!
//! coffer's own environment holds what those programs must never see: `COFFER_PASSWORD`
//! (the repository's password) and the storage credentials (`AWS_*`, `AZURE_*`). A child
//! that inherited them would pass them on to whatever it runs in turn (a `ProxyCommand`, a
//! shell escape) and keep them readable in `/proc/PID/environ` while it runs.

use std::ffi::OsString;
use std::process::Command;

/// What every program may need: where to find programs, who and where the user is, the
/// language and time zone of its messages, and where temporary files go.
const BASE: &[&str] = &["PATH", "HOME", "USER", "LOGNAME", "LANG", "TZ", "TMPDIR"];

/// Clear `cmd`'s environment and copy back from this process the variables in the base list
/// (`PATH`, `HOME`, `USER`, `LOGNAME`, `LANG`, `LC_*`, `TZ`, `TMPDIR`) and those that `extra`
/// accepts. Variables the caller then sets with `cmd.env` come on top.
pub fn restrict(cmd: &mut Command, extra: impl Fn(&str) -> bool) {
    restrict_from(cmd, std::env::vars_os(), extra);
}

fn restrict_from(
    cmd: &mut Command,
    vars: impl Iterator<Item = (OsString, OsString)>,
    extra: impl Fn(&str) -> bool,
) {
    cmd.env_clear();
    for (name, value) in vars {
        // A name that is not UTF-8 is nothing a child needs.
        let Some(n) = name.to_str() else { continue };
        if allowed(n) || extra(n) {
            cmd.env(&name, &value);
        }
    }
}

fn allowed(name: &str) -> bool {
    BASE.contains(&name) || name.starts_with("LC_")
}

/// The variables `cmd` will start with (after `restrict`), for tests.
#[cfg(test)]
pub(crate) fn planned(cmd: &Command) -> Vec<(String, String)> {
    cmd.get_envs()
        .filter_map(|(k, v)| {
            Some((
                k.to_string_lossy().into_owned(),
                v?.to_string_lossy().into_owned(),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_allow_list_passes() {
        let vars = [
            ("PATH", "/usr/bin"),
            ("HOME", "/root"),
            ("LC_ALL", "C.UTF-8"),
            ("TZ", "UTC"),
            ("COFFER_PASSWORD", "secret"),
            ("AWS_SECRET_ACCESS_KEY", "k"),
            ("AZURE_STORAGE_KEY", "k"),
            ("PGHOST", "db"),
            ("SSH_AUTH_SOCK", "/run/agent"),
            ("LD_PRELOAD", "/tmp/x.so"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let mut c = Command::new("true");
        restrict_from(&mut c, vars.clone().into_iter(), |n| n == "SSH_AUTH_SOCK");
        let mut got: Vec<String> = planned(&c).into_iter().map(|(k, _)| k).collect();
        got.sort();
        assert_eq!(got, ["HOME", "LC_ALL", "PATH", "SSH_AUTH_SOCK", "TZ"]);
        // A cleared environment, not only the absence of what was listed.
        let mut c = Command::new("true");
        restrict_from(&mut c, vars.into_iter(), |_| false);
        assert!(planned(&c).iter().all(|(k, _)| k != "PGHOST"));
    }
}
