//! Reading ahead ([`vpnroute_store::ReadTx::read_ahead`]): one set-based statement per kind
//! of read named, all of them in one round trip, their answers kept in the transaction's memo
//! (`tx.rs`, [`Memo`](crate::tx::Memo)) where the single reads look first. A replica
//! mirroring another's changes reads the specs of many gateways at once this way: measured
//! (two replicas, create+delete over 64 gateways), its reads were some six round trips per
//! gateway, one after the other in one long read transaction, and took 10–20% of the writes'
//! throughput.

use std::collections::{HashMap, HashSet};

use tokio_postgres::types::ToSql;
use vpnroute_store::{ReadAhead, StoreError};

use crate::tx::{kind_named, route_columns, route_from_row, PgTx, ResourceRow};

/// Resources of one kind (`$1`) by id (`$2`).
const RESOURCES: &str = "SELECT id, account_id, region_id, doc FROM resources WHERE kind = $1 AND id = ANY($2)";
/// Every child of each parent (`$1`), in creation order.
const CHILDREN: &str =
    "SELECT parent_id, id, kind, account_id, region_id, doc FROM resources WHERE parent_id = ANY($1) ORDER BY seq";
/// (desired, applied) of each gateway (`$1`) that has a row.
const VERSIONS: &str = "SELECT gateway_id, desired, applied FROM gateway_versions WHERE gateway_id = ANY($1)";
/// The routes of each gateway (`$1`) at its version (`$2`), as `PgTx::routes_at_version`
/// reads one: the current rows no later version changed, and the before-images of those a
/// later version did; the gateway in the last column.
const ROUTES_AT: &str = concat!(
    "SELECT x.*, w.gid FROM unnest($1::text[], $2::int8[]) AS w(gid, ver) CROSS JOIN LATERAL (SELECT ",
    route_columns!(),
    " FROM vpn_routes r WHERE r.gateway_id = w.gid AND NOT EXISTS \
       (SELECT 1 FROM vpn_route_history h WHERE h.gateway_id = w.gid AND h.seq = r.seq AND h.version > w.ver) \
     UNION ALL SELECT ",
    route_columns!(),
    " FROM vpn_route_history h WHERE h.gateway_id = w.gid AND h.present AND h.version = \
       (SELECT MIN(version) FROM vpn_route_history h2 WHERE h2.gateway_id = w.gid AND h2.seq = h.seq AND h2.version > w.ver)) x \
     ORDER BY w.gid, x.seq"
);

/// One statement to send: what it reads ahead, with its parameters.
enum Sent<'a> {
    Resources(&'static str, &'a Vec<String>),
    Children(&'a Vec<String>),
    Versions(&'a Vec<String>),
    /// Each gateway once, with its version.
    RoutesAt(Vec<&'a str>, Vec<i64>),
}

impl Sent<'_> {
    fn sql(&self) -> &'static str {
        match self {
            Sent::Resources(..) => RESOURCES,
            Sent::Children(_) => CHILDREN,
            Sent::Versions(_) => VERSIONS,
            Sent::RoutesAt(..) => ROUTES_AT,
        }
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        match self {
            Sent::Resources(kind, ids) => vec![kind, *ids],
            Sent::Children(ids) | Sent::Versions(ids) => vec![*ids],
            Sent::RoutesAt(gids, vers) => vec![gids, vers],
        }
    }
}

impl PgTx<'_> {
    /// See [`vpnroute_store::ReadTx::read_ahead`]. Only a read transaction that may read
    /// the database reads ahead; any other answers `false` (see `PgTx::may_read_ahead`).
    pub(crate) fn read_ahead_into_memo(&self, ahead: &[ReadAhead]) -> Result<bool, StoreError> {
        if !self.may_read_ahead() {
            return Ok(false);
        }
        let sent: Vec<Sent<'_>> = ahead
            .iter()
            .filter_map(|a| match a {
                ReadAhead::Resources(kind, ids) if !ids.is_empty() => Some(Sent::Resources(kind.as_str(), ids)),
                ReadAhead::Children(ids) if !ids.is_empty() => Some(Sent::Children(ids)),
                ReadAhead::GatewayVersions(ids) if !ids.is_empty() => Some(Sent::Versions(ids)),
                ReadAhead::RoutesAtVersion(pairs) if !pairs.is_empty() => {
                    // One version per gateway (the first named): the rows are told apart by
                    // gateway, so a gateway named twice would have its routes twice.
                    let mut seen = HashSet::new();
                    let (gids, vers) = pairs
                        .iter()
                        .filter(|(g, _)| seen.insert(g.as_str()))
                        .map(|(g, v)| (g.as_str(), *v))
                        .unzip();
                    Some(Sent::RoutesAt(gids, vers))
                }
                _ => None,
            })
            .collect();
        if sent.is_empty() {
            return Ok(true);
        }
        let params: Vec<_> = sent.iter().map(Sent::params).collect();
        let statements: Vec<(&str, &[&(dyn ToSql + Sync)])> =
            sent.iter().zip(&params).map(|(s, p)| (s.sql(), &p[..])).collect();
        let answers = self.pipeline(&statements)?;
        let mut memo = self.memo();
        for (sent, rows) in sent.iter().zip(answers) {
            match sent {
                Sent::Resources(kind, ids) => {
                    // (An id may be named more than once: each gets the row.)
                    let found: HashMap<String, ResourceRow> = rows
                        .iter()
                        .map(|r| {
                            let row = ResourceRow {
                                account_id: r.get(1),
                                region_id: r.get(2),
                                doc: r.get(3),
                            };
                            (r.get(0), row)
                        })
                        .collect();
                    for id in *ids {
                        memo.rows.insert((kind, id.clone()), found.get(id).cloned());
                    }
                }
                Sent::Children(parents) => {
                    let mut lists: HashMap<String, Vec<(String, String)>> =
                        parents.iter().map(|p| (p.clone(), Vec::new())).collect();
                    for r in &rows {
                        let (parent, id, kind): (String, String, String) = (r.get(0), r.get(1), r.get(2));
                        // A kind this store does not know: no single read can ask for it.
                        let Some(kind) = kind_named(&kind) else { continue };
                        let row = ResourceRow {
                            account_id: r.get(3),
                            region_id: r.get(4),
                            doc: r.get(5),
                        };
                        if let Some(list) = lists.get_mut(&parent) {
                            list.push((kind.to_string(), row.doc.clone()));
                        }
                        memo.rows.insert((kind, id), Some(row));
                    }
                    memo.children.extend(lists);
                }
                Sent::Versions(ids) => {
                    let found: HashMap<String, (i64, i64)> =
                        rows.iter().map(|r| (r.get(0), (r.get(1), r.get(2)))).collect();
                    for id in *ids {
                        let v = found.get(id).copied().unwrap_or((0, 0));
                        memo.versions.insert(id.clone(), v);
                    }
                }
                Sent::RoutesAt(gids, vers) => {
                    let mut lists: HashMap<&str, Vec<_>> = gids.iter().map(|g| (*g, Vec::new())).collect();
                    for r in &rows {
                        let gid: String = r.get(12);
                        if let Some(list) = lists.get_mut(gid.as_str()) {
                            list.push(route_from_row(r));
                        }
                    }
                    for (gid, version) in gids.iter().zip(vers) {
                        let routes = lists.remove(gid).unwrap_or_default();
                        memo.routes_at.insert(gid.to_string(), (*version, routes));
                    }
                }
            }
        }
        Ok(true)
    }
}
