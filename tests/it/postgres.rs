//! The PostgreSQL test support (for the shared store of #11): a throwaway cluster that starts,
//! answers, keeps what it commits across a connection, and is gone after the test.

use crate::support::postgres::Postgres;

#[tokio::test]
async fn a_throwaway_cluster_starts_answers_and_commits() {
    let Some(pg) = Postgres::start() else {
        return; // said loudly by `start`
    };
    let (client, conn) = tokio_postgres::connect(&pg.url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test cluster: {e}"));
    let task = tokio::spawn(conn);
    client
        .batch_execute(
            "CREATE TABLE t (event_id TEXT PRIMARY KEY); INSERT INTO t VALUES ('a') ON CONFLICT DO NOTHING; INSERT INTO t VALUES ('a') ON CONFLICT DO NOTHING",
        )
        .await
        .unwrap();
    drop(client);
    let _ = task.await;
    let (client, conn) = tokio_postgres::connect(&pg.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let n: i64 = client
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "one row, committed, deduplicated");
    let v: String = client
        .query_one("SHOW server_version", &[])
        .await
        .unwrap()
        .get(0);
    assert!(v.starts_with(char::is_numeric), "{v}");
}
