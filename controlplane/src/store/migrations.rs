//! Versioned schema migrations, embedded in the binary from `migrations/<backend>/NNNN_name.sql`.
//!
//! Each backend keeps `schema_migrations(version, name, checksum, applied_at)` and applies, in order and in one
//! transaction under a lock (so two nodes starting at once do not race), the migrations it lacks. Running them
//! again does nothing. A migration that was edited
//! after it was applied, or a database newer than this binary, stops start-up with a message saying so.

use super::{Result, StoreError};

#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

impl Migration {
    /// FNV-1a over the SQL text: detects a migration edited after it was applied (not a security check).
    pub fn checksum(&self) -> i64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in self.sql.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // Stored in a signed 64-bit column: keep the bits, drop the sign.
        (hash >> 1) as i64
    }
}

pub const MIGRATIONS_POSTGRES: &[Migration] = &[
    Migration { version: 1, name: "init", sql: include_str!("../../../migrations/postgres/0001_init.sql") },
    Migration {
        version: 2,
        name: "one_running_recording",
        sql: include_str!("../../../migrations/postgres/0002_one_running_recording.sql"),
    },
    Migration { version: 3, name: "api_keys", sql: include_str!("../../../migrations/postgres/0003_api_keys.sql") },
    Migration { version: 4, name: "removals", sql: include_str!("../../../migrations/postgres/0004_removals.sql") },
    Migration { version: 5, name: "chat", sql: include_str!("../../../migrations/postgres/0005_chat.sql") },
    Migration { version: 6, name: "breakouts", sql: include_str!("../../../migrations/postgres/0006_breakouts.sql") },
    Migration {
        version: 7,
        name: "analytics_time",
        sql: include_str!("../../../migrations/postgres/0007_analytics_time.sql"),
    },
];

pub const MIGRATIONS_SQLITE: &[Migration] = &[
    Migration { version: 1, name: "init", sql: include_str!("../../../migrations/sqlite/0001_init.sql") },
    Migration {
        version: 2,
        name: "one_running_recording",
        sql: include_str!("../../../migrations/sqlite/0002_one_running_recording.sql"),
    },
    Migration { version: 3, name: "api_keys", sql: include_str!("../../../migrations/sqlite/0003_api_keys.sql") },
    Migration { version: 4, name: "removals", sql: include_str!("../../../migrations/sqlite/0004_removals.sql") },
    Migration { version: 5, name: "chat", sql: include_str!("../../../migrations/sqlite/0005_chat.sql") },
    Migration { version: 6, name: "breakouts", sql: include_str!("../../../migrations/sqlite/0006_breakouts.sql") },
    Migration {
        version: 7,
        name: "analytics_time",
        sql: include_str!("../../../migrations/sqlite/0007_analytics_time.sql"),
    },
];

/// What a migration run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// Versions applied by this run, in order.
    pub applied: Vec<i64>,
    /// The schema version after the run.
    pub version: i64,
}

/// Decides what to apply, given what the database says it has: `(version, checksum)` pairs.
pub fn plan(known: &'static [Migration], applied: &[(i64, i64)]) -> Result<Vec<&'static Migration>> {
    let newest_known = known.last().map_or(0, |m| m.version);
    for &(version, checksum) in applied {
        match known.iter().find(|m| m.version == version) {
            Some(m) if m.checksum() != checksum => {
                return Err(StoreError::Migration(format!(
                    "migration {version} ({}) was changed after it was applied to this database; \
                     restore the original file or write a new migration",
                    m.name
                )));
            }
            Some(_) => {}
            None if version > newest_known => {
                return Err(StoreError::Migration(format!(
                    "the database schema is at version {version}, newer than this binary knows ({newest_known}); \
                     run a newer sluice"
                )));
            }
            None => {
                return Err(StoreError::Migration(format!(
                    "the database has migration {version}, unknown to this binary"
                )));
            }
        }
    }
    Ok(known.iter().filter(|m| !applied.iter().any(|(v, _)| *v == m.version)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_backends_have_the_same_migrations_in_order() {
        let pg: Vec<_> = MIGRATIONS_POSTGRES.iter().map(|m| (m.version, m.name)).collect();
        let lite: Vec<_> = MIGRATIONS_SQLITE.iter().map(|m| (m.version, m.name)).collect();
        assert_eq!(pg, lite);
        assert!(pg.windows(2).all(|w| w[0].0 < w[1].0), "versions must increase");
    }

    #[test]
    fn plan_skips_applied_and_refuses_edits_and_newer_schemas() {
        let m = &MIGRATIONS_SQLITE[0];
        assert_eq!(plan(MIGRATIONS_SQLITE, &[]).unwrap().len(), MIGRATIONS_SQLITE.len());
        assert!(plan(MIGRATIONS_SQLITE, &[(m.version, m.checksum())]).unwrap().iter().all(|x| x.version != m.version));
        let edited = plan(MIGRATIONS_SQLITE, &[(m.version, m.checksum() ^ 1)]).unwrap_err().to_string();
        assert!(edited.contains("changed after it was applied"), "{edited}");
        let newer = plan(MIGRATIONS_SQLITE, &[(m.version, m.checksum()), (999, 0)]).unwrap_err().to_string();
        assert!(newer.contains("newer than this binary"), "{newer}");
    }
}
