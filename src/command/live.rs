//! What stops a run from a database source before anything is written, found in the source's
//! catalog (read in a read-only snapshot): the rules bound to its tables, `where` filters that could
//! read or write elsewhere, rows that row-level security would hide, large objects without a
//! policy, materialized views that would run more than a read in staging. `check` and a refresh
//! both use it.

use crate::diagnostic::Diagnostics;
use crate::endpoint::ConnInfo;
use crate::error::Error;
use crate::rules::{self, BoundTable, Diagnostic, Plan, QualifiedName};
use crate::source::postgres::{self as pg, Catalog};

fn db(e: crate::db::DbError) -> Error {
    Error::Database(e)
}

/// Everything about the source that stops a run before anything is written, every problem at
/// once: the rules bound to the catalog, filters that could write, rows that row-level security
/// would hide, large objects without a policy.
pub async fn check_source(
    plan: &Plan,
    client: &tokio_postgres::Client,
    catalog: &Catalog,
) -> Result<Vec<BoundTable>, Error> {
    let mut problems = match rules::bind(plan, &catalog.source_tables()) {
        Ok(bound) => {
            let keys: Vec<(Option<String>, pg::ForeignKey)> = catalog
                .key_columns
                .iter()
                .chain(plan.references.iter().map(|r| &r.key))
                .map(|k| (None, k.clone()))
                .collect();
            let mut problems =
                rules::keys::key_problems(plan, &bound, &catalog.source_tables(), &keys);
            problems.extend(filter_problems(plan, client, catalog).await?);
            problems.extend(source_problems(plan, catalog));
            if problems.is_empty() {
                return Ok(bound);
            }
            problems
        }
        Err(mut problems) => {
            problems.extend(filter_problems(plan, client, catalog).await?);
            problems.extend(source_problems(plan, catalog));
            problems
        }
    };
    problems.dedup();
    Err(Error::Bind(Diagnostics(problems)))
}

/// The `where` filters of the tables the source has, each checked against the server's parse.
async fn filter_problems(
    plan: &Plan,
    client: &tokio_postgres::Client,
    catalog: &Catalog,
) -> Result<Vec<Diagnostic>, Error> {
    let mut out = Vec::new();
    for t in plan.tables.values() {
        // A partitioned table's filter is checked on it (its partitions use the same one).
        if !catalog.tables.iter().any(|c| c.name == t.name) {
            continue;
        }
        let columns: Vec<String> = catalog
            .tables
            .iter()
            .find(|c| c.name == t.name)
            .map(|c| c.columns.iter().map(|c| c.name.clone()).collect())
            .unwrap_or_default();
        // `where`, and a subset's `always` condition: both read by the server.
        let always = t.subset.as_ref().and_then(|s| {
            let a = s.always.as_ref()?;
            Some((a, s.location.clone(), "subset always"))
        });
        let filter = t.filter.as_ref().map(|f| (f, t.location.clone(), "where"));
        for (text, location, what) in filter.into_iter().chain(always) {
            if let Some(why) = pg::filter_problem(client, &t.name, &columns, text)
                .await
                .map_err(db)?
            {
                out.push(Diagnostic {
                    location: Some(location),
                    message: format!("{what} of {}: {why}", t.name),
                });
            }
        }
    }
    Ok(out)
}

/// Tables whose rows row-level security would hide, and large objects without a policy.
fn source_problems(plan: &Plan, catalog: &Catalog) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let hidden: Vec<String> = catalog
        .tables
        .iter()
        .filter(|t| t.rls_hides && !t.foreign)
        .filter(|t| {
            !plan
                .table_rules(None, &t.name, t.partition_root.as_ref())
                .is_some_and(|r| r.skip)
        })
        .map(|t| t.name.to_string())
        .collect();
    if !hidden.is_empty() {
        out.push(Diagnostic {
            location: None,
            message: format!(
                "row-level security would hide rows of {} from the source role, so part of each \
                 table would be copied: read as a role with BYPASSRLS (or the tables' owner), or \
                 skip these tables (pg_dump refuses them the same way)",
                hidden.join(", ")
            ),
        });
    }
    if !plan.policy.empty_matviews {
        // Only a view that is refreshed runs what it calls.
        let calls: Vec<(QualifiedName, String)> = catalog
            .matview_calls
            .iter()
            .filter(|(v, _)| catalog.matviews.iter().any(|m| m.name == *v && m.populated))
            .cloned()
            .collect();
        if let Some(why) = crate::db::matview_problem(&calls) {
            out.push(Diagnostic {
                location: None,
                message: format!("the source: {why}"),
            });
        }
    }
    if catalog.large_objects > 0 && plan.policy.large_objects.is_none() {
        out.push(Diagnostic {
            location: None,
            message: format!(
                "the source has {} large object(s), which no rule reads: choose with \
                 `large_objects = \"drop\"` or `\"keep\"` under [policy] in the rules file",
                catalog.large_objects
            ),
        });
    }
    out
}

/// `anonymize check` on a database: the catalog in a read-only snapshot (no row is read), the rules
/// bound to it, the filters and the source's own problems. Returns the source's tables and catalog.
pub fn check_catalog(
    plan: &Plan,
    c: &ConnInfo,
) -> Result<(Vec<rules::SourceTable>, Catalog), Error> {
    let runtime = crate::db::runtime(1).map_err(Error::runtime)?;
    runtime.block_on(async {
        let client = crate::db::connect(c).await.map_err(db)?;
        pg::begin_snapshot(&client).await.map_err(db)?;
        let catalog = pg::read_catalog(&client).await.map_err(db)?;
        check_source(plan, &client, &catalog).await?;
        Ok((catalog.source_tables(), catalog))
    })
}
