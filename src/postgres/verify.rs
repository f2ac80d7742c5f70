//! Checking a restored database against the row counts its snapshot recorded.

use super::conn::Conn;
use super::tools::{self, Tool};
use super::url::PgUrl;
use super::{recorded_row_counts, SOURCE};
use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// One table: the rows the snapshot recorded and the rows the database holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableCheck {
    /// As `pg_dump` names it: `public.users`, `billing."Weird Name"`.
    pub table: String,
    /// `None`: the snapshot has no record of this table (e.g. it belongs to an extension).
    pub expected: Option<u64>,
    /// `None`: the table is missing from the database.
    pub actual: Option<u64>,
}

impl TableCheck {
    /// A recorded table must be there with the same number of rows; tables the snapshot
    /// does not know are reported but are not a mismatch.
    pub fn ok(&self) -> bool {
        self.expected.is_none() || self.expected == self.actual
    }
}

/// Every ordinary table outside the system schemas with its exact row count, named the way
/// `pg_dump` names it (`quote_ident` follows the same rules as pg_dump's quoting).
/// Partitioned parents are left out: their rows are counted in their partitions, which is
/// where the dump's COPY blocks put them too.
const COUNT_ROWS: &str = "\
SELECT coalesce(json_object_agg(name, n), '{}') FROM (
  SELECT quote_ident(ns.nspname) || '.' || quote_ident(c.relname) AS name,
         (xpath('/row/n/text()', query_to_xml(
            format('SELECT count(*) AS n FROM %I.%I', ns.nspname, c.relname),
            false, true, '')))[1]::text::bigint AS n
  FROM pg_class c JOIN pg_namespace ns ON ns.oid = c.relnamespace
  WHERE c.relkind = 'r'
    AND ns.nspname NOT IN ('pg_catalog', 'information_schema')
    AND ns.nspname !~ '^pg_(toast|temp_|toast_temp_)'
) t;";

/// Count the rows of every table in the database at `url` and compare them with what
/// `snapshot` recorded. Sorted by table name.
pub fn verify_row_counts(
    snapshot: &Snapshot,
    url: &str,
    pg_bin: Option<&Path>,
) -> Result<Vec<TableCheck>> {
    if snapshot.source != SOURCE {
        return Err(Error::invalid(format!(
            "this snapshot is not a PostgreSQL backup (its source is {:?})",
            snapshot.source
        )));
    }
    let conn = Conn::new(PgUrl::parse(url)?)?;
    let psql = tools::find("psql", pg_bin, None)?;
    compare(snapshot, &psql, &conn)
}

pub(super) fn compare(snapshot: &Snapshot, psql: &Tool, conn: &Conn) -> Result<Vec<TableCheck>> {
    let actual: BTreeMap<String, u64> = tools::psql_json(psql, conn, COUNT_ROWS, &[])?;
    let expected: BTreeMap<String, u64> = recorded_row_counts(snapshot).into_iter().collect();
    let mut names: Vec<&String> = actual.keys().chain(expected.keys()).collect();
    names.sort();
    names.dedup();
    Ok(names
        .into_iter()
        .map(|t| TableCheck {
            table: t.clone(),
            expected: expected.get(t).copied(),
            actual: actual.get(t).copied(),
        })
        .collect())
}
