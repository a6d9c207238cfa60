//! The store contract for a revoke, the second operation on a code: the same claim rules as a
//! create's (one claim per code and target in flight, durable before any call, idempotency
//! keys), plus the revocation's own: the code is marked revoked with the first claim, and from
//! then on nothing delivers it again.

use std::sync::Arc;

use chrono::Utc;
use serde_json::json;

use super::{begin, finish_created, new, outcome, Opened};
use crate::domain::code::CodeConflict;
use crate::domain::delivery::Status;
use crate::domain::request::{Begin, Claim, NewRevoke, OpKind, PlannedTarget};
use crate::ports::Store;

pub(super) async fn run(open: super::Open<'_>) {
    a_revoke_claims_what_is_delivered_and_marks_the_code_revoked(open().store).await;
    revokes_racing_for_one_code_claim_each_target_once(open()).await;
    a_revoke_claims_a_target_a_create_is_delivering(open().store).await;
    revoke_idempotency_keys_replay_and_refuse(open().store).await;
}

fn revoke(code: &str, key: Option<&str>, at: &[&str]) -> NewRevoke {
    NewRevoke {
        key: key.map(str::to_owned),
        body: json!({ "campaign": "c", "code": code }),
        campaign: "c".into(),
        code: code.into(),
        targets: at
            .iter()
            .map(|t| PlannedTarget {
                upstream: (*t).into(),
                settled: None,
            })
            .collect(),
        requested_by: Some("ops".into()),
        now: Utc::now(),
        key_window: chrono::Duration::hours(1),
    }
}

fn revoking(begun: Begin) -> (i64, i64, Vec<Claim>) {
    match begun {
        Begin::Revoking {
            request_id,
            code_id,
            claims,
            ..
        } => (request_id, code_id, claims),
        other => panic!("expected a revoke, got {other:?}"),
    }
}

async fn a_revoke_claims_what_is_delivered_and_marks_the_code_revoked(store: Arc<dyn Store>) {
    assert!(matches!(
        store.begin_revoke(revoke("NONE-1", None, &["a"])).await.unwrap(),
        Begin::NoSuchCode
    ));
    let (request_id, code_id, _) = new(begin(&*store, "REV-1", "c", &["a", "b"]).await);
    store
        .record(OpKind::Create, vec![(code_id, outcome("b", Status::Failed))])
        .await
        .unwrap();
    finish_created(&*store, "REV-1", request_id, code_id).await;

    let (revoke_id, revoked_code, claims) = revoking(
        store
            .begin_revoke(revoke("rev-1", None, &["a", "b", "z"]))
            .await
            .unwrap(),
    );
    assert_eq!(revoked_code, code_id, "found whatever the case");
    assert!(
        matches!(
            claims[..],
            [
                Claim::Send,
                Claim::NotDelivered(Some(Status::Failed)),
                Claim::NotDelivered(None)
            ]
        ),
        "{claims:?}"
    );
    // Durable before the call: the revoke is unfinished with its one claim pending.
    let unfinished = store.unfinished_requests().await.unwrap();
    assert_eq!(unfinished.len(), 1);
    assert_eq!(unfinished[0].operation, OpKind::Revoke);
    assert_eq!(unfinished[0].pending, ["a"]);
    // The code is revoked from the claim on: a create of it is a conflict.
    match begin(&*store, "REV-1", "c", &["b"]).await {
        Begin::Conflict(CodeConflict::Revoked { existing, .. }) => assert_eq!(existing, "REV-1"),
        other => panic!("a revoked code was taken again: {other:?}"),
    }
    let held = store.code("REV-1".into(), Some("c".into())).await.unwrap();
    assert!(held[0].revoked_at.is_some());
    assert_eq!(held[0].revocations["a"].status, Status::Pending);

    store
        .finish_request(
            revoke_id,
            OpKind::Revoke,
            json!({ "results": [] }).to_string(),
            vec![(code_id, outcome("a", Status::Revoked))],
        )
        .await
        .unwrap();
    assert!(store.unfinished_requests().await.unwrap().is_empty());
    let now = store
        .target_results(OpKind::Revoke, code_id, vec!["a".into()])
        .await
        .unwrap();
    assert_eq!(now[0].status, Status::Revoked);
    // The delivery is untouched: the create's record says what the create did.
    let create = store
        .target_results(OpKind::Create, code_id, vec!["a".into()])
        .await
        .unwrap();
    assert_eq!(create[0].status, Status::Created);
    // A second revoke finds it done, and keeps the first revocation's time.
    let first_at = held[0].revoked_at;
    match store.begin_revoke(revoke("REV-1", None, &["a"])).await.unwrap() {
        Begin::Revoking { claims, revoked_at, .. } => {
            assert!(
                matches!(&claims[..], [Claim::Done(r)] if r.status == Status::Revoked),
                "{claims:?}"
            );
            assert_eq!(Some(revoked_at), first_at);
        }
        other => panic!("{other:?}"),
    }
}

async fn revokes_racing_for_one_code_claim_each_target_once(opened: Opened) {
    let store = opened.store.clone();
    let (request_id, code_id, _) = new(begin(&*store, "RACE-R", "c", &["a"]).await);
    finish_created(&*store, "RACE-R", request_id, code_id).await;
    // Eight revokes, half of them through another owner (another replica), at once.
    let handles: Vec<Arc<dyn Store>> = (0..8)
        .map(|i| if i % 2 == 0 { store.clone() } else { (opened.peer)() })
        .collect();
    let begun = futures::future::join_all(handles.iter().map(|s| s.begin_revoke(revoke("RACE-R", None, &["a"])))).await;
    let claims: Vec<Claim> = begun.into_iter().flat_map(|b| revoking(b.unwrap()).2).collect();
    assert_eq!(
        claims.iter().filter(|c| matches!(c, Claim::Send)).count(),
        1,
        "{claims:?}"
    );
    assert_eq!(
        claims.iter().filter(|c| matches!(c, Claim::Elsewhere)).count(),
        7,
        "{claims:?}"
    );
}

async fn a_revoke_claims_a_target_a_create_is_delivering(store: Arc<dyn Store>) {
    // The create's claim is pending (its call in flight) when the revoke arrives.
    let (_, code_id, _) = new(begin(&*store, "FLIGHT-1", "c", &["a"]).await);
    let (_, _, claims) = revoking(store.begin_revoke(revoke("FLIGHT-1", None, &["a"])).await.unwrap());
    assert!(matches!(claims[..], [Claim::CreateInFlight]), "{claims:?}");
    // Claimed by that revoke: a second one does not call too.
    let (_, _, claims) = revoking(store.begin_revoke(revoke("FLIGHT-1", None, &["a"])).await.unwrap());
    assert!(matches!(claims[..], [Claim::Elsewhere]), "{claims:?}");
    let held = store.code("FLIGHT-1".into(), Some("c".into())).await.unwrap();
    assert_eq!(held[0].revocations["a"].status, Status::Pending);
    assert_eq!(held[0].deliveries["a"].status, Status::Pending);
    let _ = code_id;
}

async fn revoke_idempotency_keys_replay_and_refuse(store: Arc<dyn Store>) {
    let (request_id, code_id, _) = new(begin(&*store, "KEY-R", "c", &["a"]).await);
    finish_created(&*store, "KEY-R", request_id, code_id).await;
    let (revoke_id, _, _) = revoking(
        store
            .begin_revoke(revoke("KEY-R", Some("k-rev"), &["a"]))
            .await
            .unwrap(),
    );
    assert!(matches!(
        store.begin_revoke(revoke("KEY-R", Some("k-rev"), &["a"])).await.unwrap(),
        Begin::InProgress(id) if id == revoke_id
    ));
    let answer = json!({ "code": "KEY-R", "results": [] }).to_string();
    store
        .finish_request(
            revoke_id,
            OpKind::Revoke,
            answer.clone(),
            vec![(code_id, outcome("a", Status::Revoked))],
        )
        .await
        .unwrap();
    match store
        .begin_revoke(revoke("KEY-R", Some("k-rev"), &["a"]))
        .await
        .unwrap()
    {
        Begin::Replay(written) => assert_eq!(written, answer),
        other => panic!("{other:?}"),
    }
    let mut other = revoke("KEY-R", Some("k-rev"), &["a"]);
    other.body = json!({ "campaign": "c", "code": "KEY-R", "delete": true });
    assert!(matches!(
        store.begin_revoke(other).await.unwrap(),
        Begin::KeyReused(id) if id == revoke_id
    ));
}
